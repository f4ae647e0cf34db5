"""Benchmark: the cost of metrics and JSON logging on the delivery pipeline.

In one run, against one local aiosmtpd sink that counts and discards, a
real issue goes to N confirmed subscribers through the whole pipeline (one
worker process forking a work horse per batch, as in production; see
bench/issue_delivery.py), alternately:

- off: `METRICS=off`, `LOG_FORMAT=text` (what the workers did before
  metrics and JSON logs);
- on:  metrics counted into a `PROMETHEUS_MULTIPROC_DIR` (every message
  counted and timed, every job's lag and result) and `LOG_FORMAT=json`.

The worker's log goes to a file in both modes, as it would to journald.
Printed: the median msg/s and CPU per message (worker and work horses,
from getrusage of the reaped children, start-up excluded) of each mode over
the runs, their ratios, and raw smtplib to the same sink as the yardstick.
In the "on" runs the counters read back from the directory must say N sent.

Run: .venv/bin/python bench/observability_overhead.py [N] [--runs R] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from issue_delivery import PROJECT, CountingSink, new_issue, raw_smtplib, seed
from prometheus_client import CollectorRegistry, multiprocess
from rq import Worker
from sqlalchemy import select

from service import create_app
from service.dev.processes import free_port
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.jobs import redis_connection
from service.models import Issue, MailingList

MODES = {
    "off": {"METRICS": "off", "LOG_FORMAT": "text"},
    "on": {"METRICS": "on", "LOG_FORMAT": "json"},
}


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def deliver(env: dict[str, str], sink: CountingSink, n: int, log_path: Path) -> dict[str, float]:
    """One issue to n subscribers with one worker; msg/s and CPU ms per message."""
    cpu_before = _children_cpu()
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"], env=env, cwd=PROJECT,
            stdout=log, stderr=log,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not Worker.all(connection=redis_connection()):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise SystemExit(f"the worker did not start; see {log_path}")
        time.sleep(0.05)
    start_up = _cpu_of(worker.pid)  # imports and the first reconciler run: not delivery
    issue = new_issue()
    sink.reset()
    start = time.perf_counter()
    sending.send_now(issue)
    db.session.commit()
    while True:
        status = db.session.scalar(select(Issue.status).where(Issue.id == issue.id))
        db.session.commit()
        if status == "sent":
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    cpu = _children_cpu() - cpu_before - start_up
    assert sink.count == n, f"sink got {sink.count} of {n}"
    return {"rate": n / elapsed, "cpu_ms": cpu / n * 1000}


def counted_sent(directory: str) -> float:
    """Issue mails the workers counted as sent, read back as /metrics would."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "zpravodaj_mails_total" and sample.labels == {
                "kind": "issue",
                "result": "sent",
            }:
                return sample.value
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each mode (alternating)")
    parser.add_argument("--database-url")
    args = parser.parse_args()

    sink = CountingSink()
    port = free_port("127.0.0.1")
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    asyncio.set_event_loop(asyncio.new_event_loop())
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        config = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "SMTP_URL": f"smtp://127.0.0.1:{port}",
            "SECRET_KEY": "bench",
            "BASE_URL": "https://zpravodaj.example",
        }
        base_env = {**os.environ, **config, "RATE_LIMITS": "off"}
        base_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        app = create_app({**config, "RATE_LIMITS": False})
        with app.app_context():
            db.drop_all()
            db.create_all()
            db.session.add(MailingList(slug="zpravodaj", name="Zpravodaj sociálního bydlení"))
            db.session.commit()
            seed(args.n)
            baseline = raw_smtplib(port, args.n)
            for run in range(args.runs):
                for mode, settings in MODES.items():
                    env = {**base_env, **settings}
                    metrics_dir = Path(tmp) / f"metrics-{run}"
                    if mode == "on":
                        metrics_dir.mkdir()
                        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
                    results[mode].append(deliver(env, sink, args.n, Path(tmp) / f"{mode}.log"))
                    if mode == "on":
                        counted = counted_sent(str(metrics_dir))
                        assert counted == args.n, f"metrics counted {counted} of {args.n}"
            db.drop_all()
    controller.stop()
    report(args, database_url, baseline, results)


def report(args, database_url: str, baseline: float, results) -> None:
    kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    medians = {
        mode: {key: statistics.median(run[key] for run in runs) for key in ("rate", "cpu_ms")}
        for mode, runs in results.items()
    }
    off, on = medians["off"], medians["on"]
    print(
        f"observability overhead: an issue to {args.n} subscribers ({kind}), one worker, "
        f"medians of {args.runs} runs per mode, alternating"
    )
    print(f"  raw smtplib, one connection, pre-rendered: {baseline:8.0f} msg/s  (yardstick)")
    for mode, label in (("off", "metrics off, text logs"), ("on", "metrics on, JSON logs ")):
        rates = ", ".join(f"{run['rate']:.0f}" for run in results[mode])
        print(
            f"  pipeline, {label}: {medians[mode]['rate']:8.0f} msg/s "
            f"= {medians[mode]['rate'] / baseline:.2f} x raw smtplib; "
            f"CPU {medians[mode]['cpu_ms']:.2f} ms/msg  (runs: {rates})"
        )
    time_overhead = off["rate"] / on["rate"] - 1  # extra wall time per message
    cpu_overhead = on["cpu_ms"] / off["cpu_ms"] - 1
    print(
        f"  on / off: time per message x {1 + time_overhead:.3f} ({time_overhead * 100:+.1f} %), "
        f"CPU per message x {1 + cpu_overhead:.3f} ({cpu_overhead * 100:+.1f} %); "
        "target: under +5 %"
    )


if __name__ == "__main__":
    main()
