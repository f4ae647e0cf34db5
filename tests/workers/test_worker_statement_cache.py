"""The forking worker compiles its periodic work's statements without keeping them (issue 14):
a worker that runs no job of its own held only those in the engine's statement cache,
≈ 0.5 MB of its memory and of every work horse's. Horses and in-process workers keep it."""

from __future__ import annotations

from sqlalchemy import select

from service.extensions import db
from service.jobs import redis_connection
from service.models import MailingList
from workers.app_worker import AppSimpleWorker, AppWorker


def cached_statements() -> int:
    return len(db.engine._compiled_cache)


def test_the_forking_workers_periodic_work_leaves_the_statement_cache_empty(app):
    db.engine._compiled_cache.clear()
    AppWorker(["mail"], connection=redis_connection(), app=app).run_maintenance_tasks()
    assert cached_statements() == 0
    # Only its periodic work: the engine caches every other statement as before.
    db.session.execute(select(MailingList.id)).all()
    assert cached_statements() == 1


def test_a_worker_that_runs_its_jobs_itself_keeps_caching(app):
    db.engine._compiled_cache.clear()
    AppSimpleWorker(["mail"], connection=redis_connection(), app=app).run_maintenance_tasks()
    assert cached_statements() > 0
