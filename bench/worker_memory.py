"""Benchmark: a worker's resident memory, idle and while it sends a large issue.

In one run:

1. baseline: a bare RQ worker (`rq.Worker` on the same Redis, no app) waiting
   for jobs, the least a worker process can weigh here;
2. `python -m service worker` (the production worker, forking a work horse per
   job) waiting for jobs: its RSS once it has registered and settled;
3. the same worker sending an issue to N confirmed subscribers (default
   20,000; the fan-out and every batch run in its work horses): the peak RSS
   of the worker and of any work horse, sampled from /proc every 20 ms.

Neither figure should grow with N: the fan-out writes the deliveries in the
database (no recipient id passes through Python) and a work horse holds one
batch's rows at a time. Printed: medians of --runs, the ratios to the bare
worker, and the target (80 MB).

With --dkim the workers sign every mail with a fresh 2048-bit key (the worker
loads the key and the signing code before forking, for its horses).

With --optimize 2 the workers (and the bare worker) run as the systemd unit and
compose.yaml run them: PYTHONOPTIMIZE=2, their bytecode compiled beforehand by
`python -m service.bytecode` into a PYTHONPYCACHEPREFIX.

Run: .venv/bin/python bench/worker_memory.py [N] [--database-url URL] [--runs R] [--dkim]
     [--optimize 0|1|2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from issue_delivery import (
    CountingSink,
    RssSampler,
    dkim_settings,
    fresh_list,
    new_issue,
    start_workers,
    stop_workers,
)
from sqlalchemy import select

from service import create_app
from service.dev.processes import free_port
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.models import Issue

PROJECT = Path(__file__).resolve().parent.parent
TARGET_MB = 80
BARE_WORKER = (
    "import sys\n"
    "from redis import Redis\n"
    "from rq import Worker\n"
    "Worker(['bare'], connection=Redis.from_url(sys.argv[1])).work()\n"
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settled_rss(pid: int, seconds: float = 3.0) -> float:
    """RSS after the process has had time to finish starting (the highest of a few reads)."""
    time.sleep(seconds)
    return max(rss_mb(pid) for _ in range(5) if time.sleep(0.1) is None)


def bare_worker_rss(redis_url: str, env: dict[str, str]) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_WORKER, redis_url], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return settled_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def during_issue(proc: subprocess.Popen, sink: CountingSink, n: int) -> tuple[float, float]:
    """Peak RSS (MB) of the worker and of its work horses while one issue is sent."""
    sampler = RssSampler([proc.pid])
    sampler.start()
    issue = new_issue()
    sink.reset()
    sending.send_now(issue)
    db.session.commit()
    while True:
        db.session.expire_all()
        status = db.session.scalar(select(Issue.status).where(Issue.id == issue.id))
        db.session.commit()
        if status == "sent":
            break
        time.sleep(0.1)
    sampler.stopped.set()
    sampler.join()
    assert sink.count == n, f"sink got {sink.count} of {n}"
    return sampler.peak["worker"] / 2**20, sampler.peak["horse"] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20_000)
    parser.add_argument("--database-url")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (medians printed)")
    parser.add_argument("--dkim", action="store_true", help="the workers sign every mail")
    parser.add_argument(
        "--optimize", choices=("0", "1", "2"), default=None,
        help="PYTHONOPTIMIZE for the workers and the bare worker (2: as the unit and image run "
        "them), with their bytecode compiled first into a PYTHONPYCACHEPREFIX, as the unit does",
    )  # fmt: skip
    args = parser.parse_args()

    sink = CountingSink()
    port = free_port("127.0.0.1")
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    asyncio.set_event_loop(asyncio.new_event_loop())
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        config = {
            "DATABASE_URL": database_url, "REDIS_URL": redis.url,
            "SMTP_URL": f"smtp://127.0.0.1:{port}", "SECRET_KEY": "bench",
            "RATE_LIMITS": False, "BASE_URL": "https://zpravodaj.example",
        }  # fmt: skip
        if args.dkim:
            config.update(dkim_settings(tmp))
        env = {**os.environ, **{k: str(v) for k, v in config.items()}, "RATE_LIMITS": "off"}
        if args.optimize is not None:
            env["PYTHONOPTIMIZE"] = args.optimize
            env["PYTHONPYCACHEPREFIX"] = f"{tmp}/bytecode"
            subprocess.run([sys.executable, "-m", "service.bytecode"], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        app = create_app(config)
        with app.app_context():
            fresh_list(args.n)
            bare = statistics.median(bare_worker_rss(redis.url, env) for _ in range(args.runs))
            idle, worker, horse = [], [], []
            for _ in range(args.runs):
                [proc] = start_workers(env, 1)
                try:
                    idle.append(settled_rss(proc.pid))
                    peak_worker, peak_horse = during_issue(proc, sink, args.n)
                    worker.append(peak_worker)
                    horse.append(peak_horse)
                finally:
                    stop_workers([proc])
            db.drop_all()
    controller.stop()

    kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    signing = ", DKIM on" if args.dkim else ""
    print(f"worker resident memory (RSS from /proc), {kind}{signing}, medians of {args.runs}")
    print(f"  bare RQ worker, idle:             {bare:6.1f} MB (baseline)")
    rows = (
        ("zpravodaj worker, idle:", statistics.median(idle)),
        (f"worker, peak during a {args.n:,} issue:", statistics.median(worker)),
        ("work horse, peak (fan-out, batch):", statistics.median(horse)),
    )
    for label, value in rows:
        verdict = "reached" if value <= TARGET_MB else "not reached"
        print(
            f"  {label:36} {value:6.1f} MB = {value / bare:.2f} x baseline; "
            f"target {TARGET_MB} MB {verdict}"
        )


if __name__ == "__main__":
    main()
