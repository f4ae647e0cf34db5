"""Benchmark: the sign-up-to-sent path against raw smtplib to the same sink.

Prints ratios against baselines measured in the same run, never absolute
promises:

- web: POST /subscribe (validation, storing the sign-up request, enqueue;
  the mail is composed by the sign-up job) per second, against GET /healthz
  (one SQL query and one Redis PING);
- send: the worker's `send_outgoing` jobs through a real RQ worker, against
  sending the same stored bytes with one raw smtplib connection per message
  (which is what one job per single mail amounts to).

Run: .venv/bin/python bench/confirmation_mail.py [N]
"""

from __future__ import annotations

import smtplib
import sys
import time
import tracemalloc

from harness import ratio, signup_app
from redis import Redis
from rq import Queue
from sqlalchemy import select

from service.dev.mail_catcher import MailCatcher, start_catcher
from service.extensions import db
from service.models import OutgoingMail, SignupRequest
from workers.app_worker import AppSimpleWorker
from workers.signup import process_signup


def main(n: int) -> None:
    catcher = MailCatcher()
    controller = start_catcher(catcher)
    with signup_app(f"smtp://127.0.0.1:{controller.port}") as (app, redis):
        client = app.test_client()

        start = time.perf_counter()
        for _ in range(n):
            client.get("/healthz")
        health = n / (time.perf_counter() - start)

        start = time.perf_counter()
        for i in range(n):
            response = client.post("/subscribe", json={"email": f"clovek{i}@seznam.cz"})
            assert response.status_code == 202
        subscribe = n / (time.perf_counter() - start)

        # Memory in a separate pass: tracemalloc slows Python down severalfold.
        tracemalloc.start()
        for i in range(100):
            client.post("/subscribe", json={"email": f"pamet{i}@seznam.cz"})
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        n_sent = n + 100

        # The requests stored sign-ups; their jobs compose the mails. Run that
        # work here, and take the sign-up jobs off the queue, so that the worker
        # below measures sending alone.
        ids = db.session.scalars(select(SignupRequest.id)).all()
        db.session.commit()
        for request_id in ids:
            process_signup(request_id)
        for job in Queue("mail", connection=Redis.from_url(redis.url)).get_jobs():
            if job.func_name == "workers.signup.process_signup":
                job.delete()

        raws = db.session.execute(
            select(OutgoingMail.sender, OutgoingMail.recipient, OutgoingMail.raw)
        ).all()
        start = time.perf_counter()
        for sender, recipient, raw in raws:
            with smtplib.SMTP("127.0.0.1", controller.port, timeout=30) as smtp:
                smtp.sendmail(sender, [recipient], raw)
        raw_rate = len(raws) / (time.perf_counter() - start)

        worker = AppSimpleWorker(["mail"], connection=Redis.from_url(redis.url), app=app)
        start = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        job_rate = n_sent / (time.perf_counter() - start)
        sent = db.session.query(OutgoingMail).filter_by(status="sent").count()
        assert sent == n_sent, sent
    controller.stop()

    print(f"n = {n}")
    print(
        f"web:  POST /subscribe {subscribe:8.1f}/s, GET /healthz {health:8.1f}/s, "
        f"ratio {ratio(subscribe, health)}"
    )
    print(
        f"send: RQ job         {job_rate:8.1f}/s, raw smtplib  {raw_rate:8.1f}/s, "
        f"ratio {ratio(job_rate, raw_rate)}"
    )
    print(f"peak Python memory over 100 sign-ups: {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
