"""Profile of a worker delivering an issue (cProfile by CPU time), in-process.

Sends a real issue to N confirmed subscribers through the whole pipeline
(`send_now`, fan-out, batches, per-message claims, personalising, SMTP) with
an `AppSimpleWorker` running the jobs in this process under cProfile timed by
the thread's CPU time (waits for the database, Redis or the SMTP sink do not
count; the profiler's own overhead does, so compare shares, not
milliseconds). The counting sink runs in a child process, so its CPU is not
in the profile. Prints the CPU per message, the shares of the pipeline's
parts and the top functions by own time.

In production each batch runs in a forked work horse; here the jobs share
one process, so what a horse pays once per batch (forking, imports after the
fork) is not in this profile: `issue_delivery.py` prints the work horses'
CPU per message from /proc.

Run: .venv/bin/python bench/profile_delivery.py [N] [--database-url URL] [--dkim]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import pstats
import sys
import tempfile
import time

from harness import ROOT, delivery_config
from issue_delivery import dkim_settings, fresh_list, new_issue
from redis import Redis
from sqlalchemy import select

from service import create_app
from service.dev.processes import free_port
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.jobs import ALL_QUEUES
from service.models import Issue

# (label, file suffix, function name): cumulative time of these, as a share of the total.
PARTS = (
    ("the SMTP exchange (SmtpTransport.send, signing included)", "workers/smtp.py", "send"),
    ("  DKIM signing", "service/deliverability/dkim.py", "__call__"),
    ("personalising (MessageSkeleton.personalise)", "service/issues/rendering.py", "personalise"),
    (
        "recording and claiming: sending it (BatchSender._start_claim)",
        "workers/delivery.py",
        "_start_claim",
    ),
    ("  waiting for its result (ClaimsInFlight.wait)", "workers/pg_claims.py", "wait"),
    ("  psycopg's execute (all statements)", "psycopg/cursor.py", "execute"),
    ("loading a batch's rows (_load_unfinished)", "workers/delivery.py", "_load_unfinished"),
    ("a batch's set-up (BatchSender.__init__)", "workers/delivery.py", "__init__"),
    ("  the issue's skeleton (skeleton_for)", "service/issues/rendering.py", "skeleton_for"),
    ("closing a batch (_finish)", "workers/delivery.py", "_finish"),
    ("claiming a batch (_claim_batch)", "workers/delivery.py", "_claim_batch"),
    ("fan-out", "workers/delivery.py", "fan_out"),
    ("RQ: dequeue, job bookkeeping", "rq/worker/base.py", "dequeue_job_and_maintain_ttl"),
)


def _sink(port: int, ready) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller
    from harness import CountingSink

    controller = Controller(CountingSink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def report(profile: cProfile.Profile, count: int) -> None:
    stats = pstats.Stats(profile)
    total = stats.total_tt
    print(f"\n{1000 * total / count:.3f} ms of CPU (profiled, main thread) per message")
    for label, suffix, name in PARTS:
        cumulative = sum(
            value[3]
            for (filename, _line, function), value in stats.stats.items()
            if filename.endswith(suffix) and function == name
        )
        print(f"  {cumulative / total:6.1%}  {label}")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(25)
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print(f"  top functions by {'own' if order == 'tottime' else 'cumulative'} time:")
        for line in lines[start : start + 26]:
            print("   ", line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--database-url")
    parser.add_argument("--dkim", action="store_true", help="DKIM-sign (a temporary key)")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="no cProfile: the CPU per message, and of the main parts (timed around them)",
    )
    args = parser.parse_args()
    port = free_port("127.0.0.1")
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    sink = context.Process(target=_sink, args=(port, ready), daemon=True)
    sink.start()
    ready.wait(30)
    from workers.app_worker import AppSimpleWorker

    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        config = {
            **delivery_config(
                args.database_url or f"sqlite:///{tmp}/bench.sqlite3", redis.url, port
            ),
            "RATE_LIMITS": False,
        }
        if args.dkim:
            config.update(dkim_settings(tmp))
        app = create_app(config)
        with app.app_context():
            fresh_list(args.n)
            issue = new_issue()
            sending.send_now(issue)
            db.session.commit()
            issue_id = issue.id
        worker = AppSimpleWorker(list(ALL_QUEUES), connection=Redis.from_url(redis.url), app=app)
        profile = cProfile.Profile(time.thread_time)
        parts = _time_parts() if args.no_profile else {}
        wall = time.perf_counter()
        cpu = time.thread_time()
        if not args.no_profile:
            profile.enable()
        worker.work(burst=True, with_scheduler=False)
        profile.disable()
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall
        with app.app_context():
            status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
            db.session.commit()
            assert status == "sent", status
            db.drop_all()
    sink.terminate()
    if args.no_profile:
        print(
            f"{cpu * 1e6 / args.n:.0f} µs of CPU (main thread) and {wall * 1e6 / args.n:.0f} µs"
            f" of wall time per message ({args.n / wall:.0f} msg/s), unprofiled;"
            " the parts, CPU / wall:"
        )
        for label, spent in parts.items():
            print(f"  {spent[0] * 1e6 / args.n:5.0f} / {spent[1] * 1e6 / args.n:5.0f} µs  {label}")
    else:
        report(profile, args.n)


def _time_parts() -> dict[str, list[float]]:
    """Wrap the main parts of the per-message path in CPU and wall-clock timers (no
    profiler). Nested parts are inside their parent's figures."""
    from service.issues.rendering import MessageSkeleton
    from workers import delivery, smtp

    parts: dict[str, list[float]] = {}
    for label, owner, name in (
        ("personalising", MessageSkeleton, "personalise"),
        ("SMTP exchange (signing included)", smtp.SmtpTransport, "send"),
        ("  DKIM signing", smtp.SmtpTransport, "_sign"),
        ("  DATA: the message, its dot, the answer", smtp, "_data"),
        ("    composing and signing the next meanwhile", delivery.BatchSender, "_compose_ahead"),
        ("recording and claiming: sending it", delivery.BatchSender, "_start_claim"),
        (
            "  waiting for its result (PostgreSQL)",
            _claims_in_flight(),
            "wait",
        ),
        ("a batch's set-up (BatchSender.__init__)", delivery.BatchSender, "__init__"),
        ("loading a batch's rows", delivery.BatchSender, "_load_unfinished"),
        ("closing a batch", delivery.BatchSender, "_finish"),
        ("fan-out", delivery, "fan_out"),
    ):
        if owner is None or not hasattr(owner, name):
            continue  # a checkout (ZPRAVODAJ_ROOT) without that part
        spent = parts.setdefault(label, [0.0, 0.0])
        setattr(owner, name, _timed(getattr(owner, name), spent))
    return parts


def _timed(function, spent: list[float]):  # type: ignore[no-untyped-def]
    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        start, started = time.thread_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[0] += time.thread_time() - start
            spent[1] += time.perf_counter() - started

    return timed


def _claims_in_flight() -> type | None:
    """workers/pg_claims.py's ClaimsInFlight, or None in a checkout from before it."""
    try:
        from workers.pg_claims import ClaimsInFlight
    except ImportError:
        return None
    return ClaimsInFlight


if __name__ == "__main__":
    main()
