"""Probe: how long a sign-up waits for, and holds, the database's write lock under load.

Serves the real app (`wsgi:app`) under gunicorn with 2 sync workers, as
bench/signup_throughput.py does (rate limits on, never reached), with timers on
each sign-up: the INSERT of its `signup_request` row (on SQLite its wall time is
the wait for the one write lock, spent in SQLite's busy handler, which sleeps
1, 2, 5, 10 … ms at a time, plus the statement), the rate-limit script's round
trip, and the time from the INSERT's start to the end of the commit (on SQLite:
how long the write lock is held). `wrk` posts new addresses at 16 connections.
Each worker writes its figures (mean, p50, p90, p99, share over 1 ms) to a JSON
file every 200 sign-ups; the script prints them per worker.

Run: .venv/bin/python bench/signup_lock_probe.py [--seconds 8] [--postgresql URL]
(ZPRAVODAJ_ROOT=<checkout> probes another checkout with this file's timers.)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

STATS_DIR = os.environ.get("SIGNUP_LOCK_PROBE_DIR", "")
_INSERT = "INSERT INTO SIGNUP_REQUEST"


def _instrumented_app():  # imported by gunicorn's workers as `signup_lock_probe:app`
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    import wsgi
    from service.extensions import db
    from service.subscriptions import rate_limits

    app = wsgi.app
    samples: dict[str, list[float]] = {"insert": [], "script": [], "insert_to_commit_end": []}
    state: dict[str, float] = {}
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, many):
        if statement.lstrip().upper().startswith(_INSERT):
            state["insert_start"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, many):
        if "insert_start" in state and statement.lstrip().upper().startswith(_INSERT):
            samples["insert"].append(time.perf_counter() - state["insert_start"])

    @event.listens_for(Session, "after_commit")
    def _committed(session):
        if "insert_start" in state:
            samples["insert_to_commit_end"].append(time.perf_counter() - state.pop("insert_start"))
            if len(samples["insert_to_commit_end"]) % 200 == 0:
                _dump(samples)

    real_script = rate_limits._run_script

    def timed_script(*args, **kwargs):
        began = time.perf_counter()
        try:
            return real_script(*args, **kwargs)
        finally:
            samples["script"].append(time.perf_counter() - began)

    rate_limits._run_script = timed_script
    return app


def _dump(samples: dict[str, list[float]]) -> None:
    figures = {}
    for name, values in samples.items():
        ordered = sorted(values)
        if ordered:
            n = len(ordered)
            figures[name] = {
                "n": n,
                "mean_ms": 1000 * sum(ordered) / n,
                "p50_ms": 1000 * ordered[n // 2],
                "p90_ms": 1000 * ordered[int(n * 0.9)],
                "p99_ms": 1000 * ordered[int(n * 0.99)],
                "over_1ms": sum(1 for v in ordered if v > 0.001) / n,
            }
    Path(STATS_DIR, f"worker-{os.getpid()}.json").write_text(json.dumps(figures))


if STATS_DIR and __name__ != "__main__":
    app = _instrumented_app()


def main() -> None:
    import argparse
    import tempfile

    root = Path(os.environ.get("ZPRAVODAJ_ROOT") or Path(__file__).resolve().parent.parent)
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import signup_throughput as bench

    from service.dev.redis_server import PrivateRedis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--postgresql")
    args = parser.parse_args()
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        url = (
            bench._own_schema(args.postgresql)
            if args.postgresql
            else f"sqlite:///{tmp}/bench.sqlite3"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))},
            "DATABASE_URL": url,
            "REDIS_URL": redis.url,
            "SMTP_URL": "smtp://127.0.0.1:9",
            "SECRET_KEY": "bench",
            "RATE_LIMITS": "on",
            "RATE_LIMIT_SUBSCRIBE_IP": "100000000 per hour; 10000000 per minute",
            "RATE_LIMIT_SUBSCRIBE_ADDRESS": "5 per hour",
            "SIGNUP_LOCK_PROBE_DIR": tmp,
            "PYTHONPATH": f"{Path(__file__).resolve().parent}:{root}",
        }
        bench.prepare_database(url, env)
        server = bench.Server("signup_lock_probe:app", env, root)
        try:
            bench.measure(server, bench.wrk_run, 2, 16)
            run = bench.measure(server, bench.wrk_run, args.seconds, 16)
        finally:
            server.stop()
        print(
            f"{run.per_second:.0f} sign-ups/s, p99 {run.p99_ms:.1f} ms, "
            f"CPU {run.cpu_ms_per_request:.2f} ms per sign-up, {run.errors} answers not 202"
        )
        for path in sorted(Path(tmp).glob("worker-*.json")):
            for name, f in json.loads(path.read_text()).items():
                print(
                    f"  {path.stem} {name:22} mean {f['mean_ms']:6.2f}  p50 {f['p50_ms']:6.2f}"
                    f"  p90 {f['p90_ms']:6.2f}  p99 {f['p99_ms']:6.2f} ms"
                    f"  over 1 ms {100 * f['over_1ms']:4.0f} %"
                )


if __name__ == "__main__":
    main()
