"""The admin upload's import job (service/subscriptions/import_jobs.py does the work).

Safe to run twice and after a kill: the job takes the import's lease first
(a second job finds it held and stops), and resumes after the last chunk
that committed.
"""

from __future__ import annotations

import logging

from rq import get_current_job

from service.logging_setup import bind
from service.subscriptions import import_jobs

log = logging.getLogger(__name__)


def run_import(import_id: int) -> str:
    """Import one uploaded CSV into its list, a chunk per transaction."""
    bind(import_id=import_id)
    job = get_current_job()
    job_id = job.id if job is not None else None
    if not import_jobs.claim(import_id, job_id):
        log.info("import %s is done or another job has it; skipping", import_id)
        return "skipped"
    return import_jobs.run(import_id, job_id)
