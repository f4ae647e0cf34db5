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
Printed: the median msg/s and CPU per message (of the work horses, which do
the delivery: the worker's reaped children, from /proc) of each mode over
the runs, their ratios, and raw smtplib to the same sink as the yardstick.
In the "on" runs the counters read back from the directory must say N sent.

On a shared machine the runs of either mode spread by more than the 5 %
to be measured, so the instrumentation is also timed on its own, in a child
process set up as a worker is (multiprocess directory, JSON logs): the
per-message counting and timing, and per batch the job's lag and result,
the work horse's switch to its worker's metric files (forked horses that
count against forked horses that do not) and the job's log lines (JSON
against text), spread over BATCH_SIZE messages. That
CPU per message, against the pipeline's, is the steadier figure.

Run: .venv/bin/python bench/observability_overhead.py [N] [--runs R] [--database-url URL]
[--simple] (--simple: the worker runs the jobs in its own process, no work horses)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    CountingSink,
    database_kind,
    delivery_config,
    median_of,
    ratio,
    start_counting_sink,
)
from issue_delivery import PROJECT, fresh_list, new_issue, raw_smtplib
from prometheus_client import CollectorRegistry, multiprocess
from rq import Worker
from sqlalchemy import select

from service import create_app
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.jobs import redis_connection
from service.models import Issue

MODES = {
    "off": {"METRICS": "off", "LOG_FORMAT": "text"},
    "on": {"METRICS": "on", "LOG_FORMAT": "json"},
}


def _delivery_cpu(pid: int, simple: bool) -> float:
    """CPU seconds (user + system) of a live worker's delivery so far: of its reaped
    children, the work horses (the scheduler, its other child, lives on); with
    --simple, of the worker itself, which then runs the jobs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 11 if simple else 13
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(deadline: float) -> None:
    """Until the worker has reaped its last work horse and waits for work again."""
    while any(w.get_state() != "idle" for w in Worker.all(connection=redis_connection())):
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not go idle")
        time.sleep(0.02)


def deliver(
    env: dict[str, str], sink: CountingSink, n: int, log_path: Path, simple: bool
) -> dict[str, float]:
    """One issue to n subscribers with one worker; msg/s and the delivery's CPU ms per message."""
    command = [sys.executable, "-m", "service", "worker", *(["--simple"] if simple else [])]
    with log_path.open("ab") as log:
        worker = subprocess.Popen(command, env=env, cwd=PROJECT, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not Worker.all(connection=redis_connection()):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise SystemExit(f"the worker did not start; see {log_path}")
        time.sleep(0.05)
    _wait_idle(deadline)
    cpu_before = _delivery_cpu(worker.pid, simple)
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
    _wait_idle(time.monotonic() + 60)
    cpu = _delivery_cpu(worker.pid, simple) - cpu_before
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
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


# Log lines of one delivery batch job: RQ's start and end lines, and ours.
LOG_LINES_PER_BATCH = 4
BATCH_SIZE = 500  # the default of the setting


def _cpu_seconds_per_call(call, repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - start) / repeat


def measure_instrumentation(repeat: int) -> None:
    """In a child with PROMETHEUS_MULTIPROC_DIR set: CPU of each instrumentation call.

    Printed as JSON on stdout; the log lines go to stderr (a file).
    """
    from service import metrics
    from service.logging_setup import configure, log_context

    assert metrics.values.ValueClass._multiprocess, "PROMETHEUS_MULTIPROC_DIR was not set"
    log = logging.getLogger("workers.delivery")
    per_message = _cpu_seconds_per_call(lambda: metrics.mail_result("issue", "sent", 0.001), repeat)

    def per_job() -> None:
        metrics.job_started("deliver_batch", 0.01)
        metrics.job_finished("deliver_batch", True)

    per_batch_metrics = _cpu_seconds_per_call(per_job, repeat // 10)
    per_horse = _horse_setup_cpu(metrics, repeat // 500)
    lines = {}
    with log_context(job_id="issue-batch-40-5f2a91c3", issue_id=12):
        for log_format in ("text", "json"):
            configure(log_format)
            lines[log_format] = _cpu_seconds_per_call(
                lambda: log.info("issue %s sent", 12), repeat // 10
            )
    print(json.dumps({"message": per_message, "job": per_batch_metrics + per_horse, **lines}))


def _horse_setup_cpu(metrics, horses: int) -> float:
    """CPU a work horse spends switching to its worker's metric files and counting once,
    beyond the fork itself: forked horses that count, against ones that do not."""

    def children_cpu(count: bool) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(horses):
            pid = os.fork()
            if pid == 0:
                if count:
                    metrics.become_work_horse(os.getppid())
                    metrics.mail_result("issue", "sent", 0.001)
                os._exit(0)
            os.waitpid(pid, 0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    return max(0.0, children_cpu(True) - children_cpu(False)) / horses


def instrumentation_cost(env: dict[str, str], tmp: str, repeat: int = 100_000) -> dict:
    """Seconds of CPU per delivered message that metrics and JSON logs add."""
    directory = Path(tmp) / "metrics-instrumentation"
    directory.mkdir()
    with (Path(tmp) / "instrumentation.log").open("wb") as log:
        child = subprocess.run(
            [sys.executable, __file__, "--instrumentation", str(repeat)],
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            stdout=subprocess.PIPE, stderr=log, check=True,
        )  # fmt: skip
    cost = json.loads(child.stdout)
    per_batch = cost["job"] + LOG_LINES_PER_BATCH * (cost["json"] - cost["text"])
    return {**cost, "total": cost["message"] + per_batch / BATCH_SIZE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each mode (alternating)")
    parser.add_argument("--database-url")
    parser.add_argument(
        "--simple", action="store_true", help="the worker runs jobs itself (no work horses)"
    )
    parser.add_argument("--instrumentation", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instrumentation:
        measure_instrumentation(args.instrumentation)
        return

    sink, port, controller = start_counting_sink()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        config = delivery_config(database_url, redis.url, port)
        base_env = {**os.environ, **config, "RATE_LIMITS": "off"}
        base_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        app = create_app({**config, "RATE_LIMITS": False})
        with app.app_context():
            fresh_list(args.n)
            baseline, _ = raw_smtplib(port, args.n)  # msg/s (and CPU ms per message)
            for run in range(args.runs):
                for mode, settings in MODES.items():
                    env = {**base_env, **settings}
                    metrics_dir = Path(tmp) / f"metrics-{run}"
                    if mode == "on":
                        metrics_dir.mkdir()
                        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
                    log_path = Path(tmp) / f"{mode}.log"
                    results[mode].append(deliver(env, sink, args.n, log_path, args.simple))
                    if mode == "on":
                        counted = counted_sent(str(metrics_dir))
                        assert counted == args.n, f"metrics counted {counted} of {args.n}"
            db.drop_all()
        instrumentation = instrumentation_cost(base_env, tmp)
    controller.stop()
    report(args, database_url, baseline, results, instrumentation)


def report(args, database_url: str, baseline: float, results, instrumentation: dict) -> None:
    kind = database_kind(database_url)
    medians = {mode: median_of(runs) for mode, runs in results.items()}
    off, on = medians["off"], medians["on"]
    print(
        f"observability overhead: an issue to {args.n} subscribers ({kind}), one worker"
        f"{' (--simple: no work horses)' if args.simple else ''}, "
        f"medians of {args.runs} runs per mode, alternating"
    )
    print(f"  raw smtplib, one connection, pre-rendered: {baseline:8.0f} msg/s  (yardstick)")
    for mode, label in (("off", "metrics off, text logs"), ("on", "metrics on, JSON logs ")):
        rates = ", ".join(f"{run['rate']:.0f}" for run in results[mode])
        print(
            f"  pipeline, {label}: {medians[mode]['rate']:8.0f} msg/s "
            f"= {ratio(medians[mode]['rate'], baseline)} x raw smtplib; "
            f"CPU {medians[mode]['cpu_ms']:.2f} ms/msg  (runs: {rates})"
        )
    time_overhead = off["rate"] / on["rate"] - 1  # extra wall time per message
    cpu_overhead = on["cpu_ms"] / off["cpu_ms"] - 1
    print(
        f"  on / off: time per message x {1 + time_overhead:.3f} ({time_overhead * 100:+.1f} %), "
        f"CPU per message x {1 + cpu_overhead:.3f} ({cpu_overhead * 100:+.1f} %); "
        "target: under +5 %"
    )
    cost = instrumentation
    print(
        f"  instrumentation timed alone: {cost['message'] * 1e6:.1f} µs per message counted, "
        f"{cost['job'] * 1e6:.1f} µs per job (the horse's switch to its files included), "
        f"a log line {cost['json'] * 1e6:.1f} µs as JSON "
        f"against {cost['text'] * 1e6:.1f} µs as text"
    )
    print(
        f"  = {cost['total'] * 1e6:.1f} µs CPU per message (batches of {BATCH_SIZE}), "
        f"{cost['total'] * 1000 / off['cpu_ms'] * 100:.2f} % of the pipeline's "
        f"{off['cpu_ms']:.2f} ms per message without it"
    )


if __name__ == "__main__":
    main()
