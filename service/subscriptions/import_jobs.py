"""The admin's CSV upload as a background job: stored, queued, imported by a worker.

The web request only checks that the file can be read at all (the same
refusals as ever: 422 with the form), counts its
rows and stores it as a `SubscriberImport` row; the job (workers/imports.py)
runs the chunked importer (importing.py). Each chunk commits with the row's
progress, so the page's progress bar reads committed work, and an import
whose worker died resumes after its last chunk.

A worker holds an import by a lease (`job_id` and `heartbeat`): a second job
for the same import finds it held and stops; the reconciler gives a queued
import whose job Redis lost, or a running one whose heartbeat went stale, a
fresh job (workers/reconcile.py). The heartbeat is renewed by a LeaseKeeper
thread for as long as the job runs (service/lease.py, as a delivery batch's),
so a chunk that takes longer than the lease does not look abandoned; each
chunk commits only while the import is still this job's.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_babel import format_number, format_percent
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Engine

from .. import jobs
from ..clock import iso_utc, utcnow
from ..extensions import db
from ..lease import LeaseKeeper
from ..models import (
    ImportProblem,
    ImportStatus,
    MailingList,
    SubscriberImport,
    User,
    rows_matched,
)
from ..people_csv import ImportRefused, decode
from ..stored_messages import N_
from .importing import ImportReport, count_rows, import_csv, text_of

log = logging.getLogger(__name__)

# Claims of one import before it is given up (each claim is a start or a resume).
MAX_ATTEMPTS = 5
STATUS_LABELS: dict[str, LazyString] = {
    ImportStatus.QUEUED: _l("čeká na spuštění"),
    ImportStatus.RUNNING: _l("probíhá"),
    ImportStatus.DONE: _l("dokončen"),
    ImportStatus.FAILED: _l("nepodařil se"),
}
# Stored as the import's error (Czech), translated when shown.
FAILED_TOO_OFTEN = N_(
    "Import se nepodařilo dokončit ani po několika pokusech. Co se stihlo, zůstalo "
    "uloženo; zkuste soubor nahrát znovu, už importovaní lidé se ohlásí jako přihlášení."
)


class LeaseLost(RuntimeError):
    """Another job holds the import now (this one's lease lapsed)."""


def lease() -> timedelta:
    """How long a silent worker keeps an import (its LeaseKeeper renews it meanwhile)."""
    return timedelta(seconds=current_app.config["BATCH_LEASE_SECONDS"])


def start(
    mailing_list: MailingList, consent_source: str, filename: str, data: bytes, user: User | None
) -> SubscriberImport:
    """Store an upload and queue its import (after commit); ImportRefused if unreadable."""
    decode(data)  # empty, or not UTF-8: refused here, with the form
    total = count_rows(io.BytesIO(data))
    record = SubscriberImport(
        mailing_list=mailing_list,
        created_by_id=user.id if user is not None else None,
        filename=filename[:255],
        consent_source=consent_source.strip()[:500],
        data=data,
        total_rows=total,
        status=ImportStatus.QUEUED,
    )
    db.session.add(record)
    db.session.flush()
    record.job_id = jobs.new_import_job_id(record.id)
    jobs.after_commit(jobs.enqueue_subscriber_import, record.id, record.job_id)
    return record


def claim(import_id: int, job_id: str | None) -> bool:
    """Take the import's lease: ours by job id, or free, or stale. Committed."""
    now = utcnow()
    claimed = rows_matched(
        update(SubscriberImport)
        .where(
            SubscriberImport.id == import_id,
            SubscriberImport.status.in_((ImportStatus.QUEUED, ImportStatus.RUNNING)),
            or_(
                SubscriberImport.job_id == job_id if job_id else False,
                SubscriberImport.heartbeat.is_(None),
                SubscriberImport.heartbeat < now - lease(),
            ),
        )
        .values(
            status=ImportStatus.RUNNING,
            job_id=job_id,
            heartbeat=now,
            attempts=SubscriberImport.attempts + 1,
        )
    )
    db.session.commit()
    return bool(claimed)


def run(import_id: int, job_id: str | None) -> str:
    """Import a claimed upload from where it stands; "done", "failed" or "lost"."""
    record = db.session.get_one(SubscriberImport, import_id)
    if record.attempts > MAX_ATTEMPTS:
        _finish(record, ImportStatus.FAILED, FAILED_TOO_OFTEN)
        return "failed"
    if record.started_at is None:
        record.started_at = utcnow()
    data, skip, mailing_list = record.data or b"", record.rows_done, record.mailing_list
    db.session.commit()
    keeper = LeaseKeeper(
        _ImportRenewal(db.engine, import_id, job_id),
        lease().total_seconds() / 6,
        name=f"import-{import_id}-lease",
    )
    keeper.start()
    try:
        import_csv(
            text_of(io.BytesIO(data)),
            mailing_list,
            record.consent_source,
            skip=skip,
            on_chunk=lambda chunk: _progress_while_held(import_id, job_id, chunk, keeper),
        )
    except LeaseLost:
        db.session.rollback()
        log.warning("import %s: another job holds it now; stopping", import_id)
        return "lost"
    except ImportRefused as refused:  # checked at the upload; a changed file, or no source
        db.session.rollback()
        _finish(db.session.get_one(SubscriberImport, import_id), ImportStatus.FAILED, str(refused))
        return "failed"
    finally:
        keeper.stop()
    _finish(db.session.get_one(SubscriberImport, import_id), ImportStatus.DONE)
    return "done"


def _held_by(import_id: int, job_id: str | None) -> Any:
    """The condition that the import is running under `job_id`'s lease."""
    return (
        (SubscriberImport.id == import_id)
        & (SubscriberImport.job_id == job_id if job_id else SubscriberImport.job_id.is_(None))
        & (SubscriberImport.status == ImportStatus.RUNNING)
    )


def _progress_while_held(
    import_id: int, job_id: str | None, chunk: ImportReport, keeper: LeaseKeeper
) -> None:
    """The chunk's progress, unless the lease keeper found the import taken."""
    if keeper.lost:
        raise LeaseLost(import_id)
    _progress(import_id, job_id, chunk)


def _progress(import_id: int, job_id: str | None, chunk: ImportReport) -> None:
    """In the chunk's transaction: its counts and problems, while the import is ours.

    The UPDATE comes after the chunk's writes but commits with them: if
    another job took the import meanwhile, nothing of this chunk lands.
    """
    moved = rows_matched(
        update(SubscriberImport)
        .where(_held_by(import_id, job_id))
        .values(
            rows_done=SubscriberImport.rows_done + chunk.rows,
            imported=SubscriberImport.imported + chunk.imported,
            unchanged=SubscriberImport.unchanged + chunk.unchanged,
            skipped=SubscriberImport.skipped + len(chunk.problems),
        )
        .execution_options(synchronize_session=False)
    )
    if not moved:
        raise LeaseLost(import_id)
    if chunk.problems:
        db.session.execute(
            insert(ImportProblem),
            [
                {"import_id": import_id, "line": line, "problem": problem}
                for line, problem in chunk.problems
            ],
        )


class _ImportRenewal:
    """Moves a running import's heartbeat on while this job holds it (a LeaseKeeper's
    renewal; each call borrows a pooled connection for one short transaction)."""

    def __init__(self, engine: Engine, import_id: int, job_id: str | None) -> None:
        self.engine = engine
        self.import_id = import_id
        self.job_id = job_id

    def __call__(self) -> bool:
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(SubscriberImport)
                .where(_held_by(self.import_id, self.job_id))
                .values(heartbeat=utcnow())
            ).rowcount
        return bool(renewed)

    def close(self) -> None:
        """Nothing to close: each renewal borrows a pooled connection."""


def _finish(record: SubscriberImport, status: ImportStatus, error: str | None = None) -> None:
    """The end: the file goes (it is personal data), the report stays."""
    record.status = status
    record.error = error
    record.data = None
    record.heartbeat = None
    record.finished_at = utcnow()
    db.session.commit()
    log.info("import %s %s", record.id, status)


def progress(record: SubscriberImport) -> dict[str, Any]:
    """What the import page polls (progress.json): counts, percent, and texts in the
    request's language ("45 %", "1 200 z 3 000"; "45%", "1,200 of 3,000")."""
    total = record.total_rows
    percent = 100.0 if not total else round(100 * min(record.rows_done, total) / total, 1)
    if record.status == ImportStatus.DONE:
        percent = 100.0
    return {
        "id": record.id,
        "status": record.status,
        "status_label": str(STATUS_LABELS[record.status]),
        "percent": percent,
        "rows_done": record.rows_done,
        "total_rows": total,
        "counts": {
            "imported": record.imported,
            "unchanged": record.unchanged,
            "skipped": record.skipped,
        },
        "texts": {
            "percent": format_percent(round(percent) / 100),
            "rows": _(
                "%(done)s z %(total)s",
                done=format_number(record.rows_done),
                total=format_number(total),
            ),
        },
        "finished": record.status in (ImportStatus.DONE, ImportStatus.FAILED),
        "created_at": iso_utc(record.created_at),
        "finished_at": iso_utc(record.finished_at),
    }


def problems(import_id: int, *, offset: int, limit: int) -> list[tuple[int, str]]:
    """A page of the import's skipped lines, by line number."""
    return [
        (line, problem)
        for line, problem in db.session.execute(
            select(ImportProblem.line, ImportProblem.problem)
            .where(ImportProblem.import_id == import_id)
            .order_by(ImportProblem.line, ImportProblem.id)
            .offset(offset)
            .limit(limit)
        )
    ]


def unfinished() -> list[tuple[int, str | None, bool, bool]]:
    """(id, job id, running, lease stale) of every import still to do, for the reconciler."""
    now = utcnow()
    settled = now - timedelta(seconds=current_app.config["RECONCILE_GRACE_SECONDS"])
    rows = db.session.execute(
        select(
            SubscriberImport.id,
            SubscriberImport.job_id,
            SubscriberImport.status,
            SubscriberImport.heartbeat,
        ).where(
            or_(
                (SubscriberImport.status == ImportStatus.QUEUED)
                & (SubscriberImport.created_at < settled),
                SubscriberImport.status == ImportStatus.RUNNING,
            )
        )
    ).all()
    db.session.commit()
    return [
        (
            import_id,
            job_id,
            status == ImportStatus.RUNNING,
            heartbeat is None or heartbeat < now - lease(),
        )
        for import_id, job_id, status, heartbeat in rows
    ]


def requeue(import_id: int) -> str:
    """A fresh job for an import whose job is lost; its id goes on the row first."""
    job_id = jobs.new_import_job_id(import_id)
    db.session.execute(
        update(SubscriberImport)
        .where(SubscriberImport.id == import_id)
        .values(job_id=job_id, heartbeat=None)
    )
    db.session.commit()
    jobs.enqueue_subscriber_import(import_id, job_id)
    return job_id
