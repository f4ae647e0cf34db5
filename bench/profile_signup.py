"""Profile of a sign-up (cProfile): where the web request's CPU goes, and the job's.

Signs up N new addresses through Flask's test client (SQLite, a private
Redis, nothing sent) under cProfile timed by CPU time (waits for the
database or Redis do not count; the profiler's own overhead does), then
runs their sign-up jobs under a second profile, and prints for each the
share of CPU time of the parts the issue named (composing the mail, header
folding, template rendering, ORM flushes and commits, Redis) and the top
functions by own time.

It also runs on an older checkout, where the request did everything itself,
for a before/after comparison: ZPRAVODAJ_ROOT=/path/to/checkout.

Run: .venv/bin/python bench/profile_signup.py [N]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

from harness import ROOT, signup_app

from service.extensions import db

# (label, file suffix, function name): cumulative time of these, as a share of the total.
PARTS = (
    ("the mail: render, build, serialise, store", "service/mail.py", "send_to_subscriber"),
    ("  building the MIME message (mail.compose)", "service/mail.py", "compose"),
    ("  serialising it (Message.as_bytes)", "email/message.py", "as_bytes"),
    ("  header folding (policy.fold / fold_binary)", "email/policy.py", "_fold"),
    ("rendering templates (render_template)", "flask/templating.py", "render_template"),
    ("ORM flush", "sqlalchemy/orm/session.py", "flush"),
    ("commit", "sqlalchemy/orm/session.py", "commit"),
    ("Redis round trips (Connection.read_response)", "redis/connection.py", "read_response"),
    ("  the RQ job's enqueue (Queue.enqueue_many)", "rq/queue.py", "enqueue_many"),
    ("validating the address", "email_validator/validate_email.py", "validate_email"),
)


def shares(profile: cProfile.Profile) -> tuple[float, list[tuple[str, float]]]:
    stats = pstats.Stats(profile)
    total = stats.total_tt
    found = []
    for label, suffix, name in PARTS:
        cumulative = sum(
            value[3]
            for (filename, _line, function), value in stats.stats.items()
            if filename.endswith(suffix) and function == name
        )
        found.append((label, cumulative / total if total else 0.0))
    return total, found


def report(title: str, profile: cProfile.Profile, count: int) -> None:
    total, found = shares(profile)
    print(f"\n== {title}: {1000 * total / count:.2f} ms of CPU (profiled) per sign-up ==")
    for label, share in found:
        print(f"  {share:6.1%}  {label}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("  top functions by own time:")
    for line in lines[start : start + 13]:
        print("   ", line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", ""))


def main(n: int) -> None:
    with signup_app() as (app, _):
        client = app.test_client()
        for i in range(10):  # warm-up: templates compiled, connections open
            client.post("/subscribe", data={"email": f"zahrati{i}@seznam.cz"})
        web = cProfile.Profile(time.process_time)
        web.enable()
        for i in range(n):
            response = client.post("/subscribe", data={"email": f"novy{i}@seznam.cz"})
            assert response.status_code == 202
        web.disable()
        report("web request POST /subscribe", web, n)
        try:
            from sqlalchemy import select

            from service.models import SignupRequest
            from workers.signup import process_signup
        except ImportError:  # an older checkout: the request did everything
            return
        ids = db.session.scalars(select(SignupRequest.id)).all()
        db.session.commit()
        job = cProfile.Profile(time.process_time)
        job.enable()
        for request_id in ids:
            process_signup(request_id)
        job.disable()
        report("sign-up job (workers.signup.process_signup)", job, len(ids))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
