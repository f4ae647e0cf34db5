"""Worker logging: every line of a job names the job and, once known, its issue.

The handler and the formats (LOG_FORMAT) are service/logging_setup.py's, set
up by `create_app` for the worker as for the web app; here is the job's part.
`job_scope` binds the job id around each job; the delivery jobs add the issue
id with `service.logging_setup.bind` as soon as they know it (a batch's issue
is on its row, not in the job's arguments).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rq.job import Job

from service.logging_setup import log_context


@contextmanager
def job_scope(job: Job) -> Iterator[None]:
    """Every line logged while `job` runs carries its id (RQ's own lines too)."""
    with log_context(job_id=job.id):
        yield
