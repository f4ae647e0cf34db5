"""Benchmark: delivering an issue through the whole pipeline, against raw smtplib.

In one run, against one local aiosmtpd sink that counts and discards:

1. baseline: raw smtplib sends N pre-rendered messages over one connection;
2. one worker process (`python -m service worker`, forking a work horse per
   batch as in production) delivers a real issue to N confirmed subscribers:
   the web side's `send_now`, fan-out, batches, per-message claims, the
   personalised rendering and SMTP;
3. the same with two worker processes.

Printed (medians of --runs, default 5): msg/s and CPU per message of each
(the workers' CPU with their work horses, from /proc; the baseline's thread
CPU), the pipeline's ratios to the baseline, two workers against one, the time from
"send" to the first mail, and the peak RSS of the worker processes and of
their work horses (sampled from /proc every 20 ms while the issue is sent;
run it with a larger N to see that neither grows with the list).

Run: .venv/bin/python bench/issue_delivery.py [N] [--database-url URL] [--dkim] [--runs R]
[--meeting]
(default N=3000 on a temporary SQLite file; pass a PostgreSQL URL to measure that;
--dkim has the workers DKIM-sign every mail with a temporary 2048-bit key, while
the baseline stays unsigned raw smtplib; --meeting sends a working group's
meeting invitation instead of a newsletter, each copy with its own ATTENDEE,
ORGANIZER and RSVP link, and also prints the CPU time of personalising one
copy with and without the invitation, medians of five runs).
"""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from harness import (
    ROOT,
    CountingSink,
    database_kind,
    delivery_config,
    median_of,
    ratio,
    start_counting_sink,
)
from rq import Worker
from sqlalchemy import insert, select

from service import create_app
from service.clock import utcnow
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.issues.rendering import Recipient, skeleton_for
from service.jobs import redis_connection
from service.meetings import rules as meeting_rules
from service.models import Issue, MailingList, Subscriber, Subscription

PROJECT = ROOT


def seed(n: int) -> None:
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    rows = [
        {"email": f"ctenar{i}@example.cz", "email_key": f"ctenar{i}@example.cz",
         "ascii_email": f"ctenar{i}@example.cz", "name": f"Čtenář {i}", "public_key": f"k{i}"}
        for i in range(n)
    ]  # fmt: skip
    db.session.execute(insert(Subscriber), rows)
    ids = db.session.scalars(select(Subscriber.id)).all()
    earlier = utcnow()
    db.session.execute(
        insert(Subscription),
        [{"subscriber_id": i, "list_id": mailing_list.id, "status": "confirmed",
          "subscribed_at": earlier, "confirmed_at": earlier} for i in ids],
    )  # fmt: skip
    db.session.commit()


def fresh_list(n: int, kind: str = "newsletter") -> None:
    """Empty tables, the list `zpravodaj` of that kind and `n` confirmed subscribers of it
    (in the app context of the benchmark's app)."""
    db.drop_all()
    db.create_all()
    db.session.add(MailingList(slug="zpravodaj", name="Zpravodaj sociálního bydlení", kind=kind))
    db.session.commit()
    seed(n)


def dkim_settings(directory: str) -> dict[str, str]:
    """Settings that make the workers sign every mail, with a fresh key in `directory`."""
    from service.deliverability.dkim import generate_private_key, private_key_pem

    key_path = Path(directory) / "dkim.pem"
    key_path.write_bytes(private_key_pem(generate_private_key()))
    return {
        "DKIM_DOMAIN": "zpravodaj.example",
        "DKIM_SELECTOR": "bench",
        "DKIM_PRIVATE_KEY_PATH": str(key_path),
    }


MEETING = False  # --meeting: every issue is a meeting invitation (set in main)


def new_issue(meeting: bool | None = None) -> Issue:
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    body = (PROJECT / "bench" / "sample_issue.md").read_text(encoding="utf-8")
    fields, errors = sending.validate_fields("Zpravodaj sociálního bydlení 12/2026", body, "")
    assert not errors, errors
    issue = sending.create_issue(mailing_list, fields, None)
    if MEETING if meeting is None else meeting:
        start = (utcnow() + timedelta(days=30)).replace(hour=9, minute=30, second=0)
        when, problems = meeting_rules.validate_meeting(
            {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat(),
             "location": "Magistrát města Ostravy, zasedací místnost 118",
             "agenda": "1. Zahájení\n2. Bytový fond města\n3. Různé"}
        )  # fmt: skip
        assert not problems, problems
        meeting_rules.attach_meeting(issue, when)
    db.session.commit()
    return issue


def personalise_cost(n: int) -> dict[str, float]:
    """CPU microseconds per personalised copy, newsletter vs meeting invitation (medians)."""
    result = {}
    for label, meeting in (("plain", False), ("meeting", True)):
        skeleton = skeleton_for(new_issue(meeting))  # a draft: rendered as a send would
        recipients = [Recipient(f"ctenar{i}@example.cz", f"Čtenář {i}", f"k{i}") for i in range(n)]
        runs = []
        for _ in range(5):
            start = time.process_time()
            for i, recipient in enumerate(recipients):
                skeleton.personalise(recipient, skeleton.new_message_id(i))
            runs.append((time.process_time() - start) / n * 1e6)
        result[label] = statistics.median(runs)
    return result


def raw_smtplib(port: int, n: int) -> tuple[float, float]:
    """(msg/s, CPU ms per message) of raw smtplib over one connection, pre-rendered."""
    issue = new_issue()
    skeleton = skeleton_for(issue)
    messages = [
        (f"ctenar{i}@example.cz",
         skeleton.personalise(Recipient(f"ctenar{i}@example.cz", f"Čtenář {i}", f"k{i}"),
                              skeleton.new_message_id(i)))
        for i in range(n)
    ]  # fmt: skip
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as connection:
        start, cpu = time.perf_counter(), time.thread_time()
        for address, raw in messages:
            connection.sendmail("zpravodaj@localhost.localdomain", [address], raw)
        return n / (time.perf_counter() - start), (time.thread_time() - cpu) * 1000 / n


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU of a process itself and of its reaped children (RQ's work
    horses), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    own, children = (int(a) + int(b) for a, b in (fields[11:13], fields[13:15]))
    tick = os.sysconf("SC_CLK_TCK")
    return own / tick, children / tick


class RssSampler(threading.Thread):
    """Peak resident memory of some processes and of their children, from /proc."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = set(pids)
        self.peak = {"worker": 0, "horse": 0}
        self.stopped = threading.Event()

    @staticmethod
    def _rss(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            for pid in self.pids:
                try:
                    self.peak["worker"] = max(self.peak["worker"], self._rss(pid))
                    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                    for child in map(int, children):
                        self.peak["horse"] = max(self.peak["horse"], self._rss(child))
                except (OSError, ValueError):
                    continue


def start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service", "worker"], env=env, cwd=PROJECT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while len(Worker.all(connection=redis_connection())) < count:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start")
        time.sleep(0.1)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(60)
    deadline = time.monotonic() + 30
    while Worker.all(connection=redis_connection()) and time.monotonic() < deadline:
        time.sleep(0.1)


def pipeline(procs: list[subprocess.Popen], env: dict, sink: CountingSink, n: int) -> dict:
    """Deliver one issue with the running workers: msg/s, CPU per message, first mail, RSS."""
    sampler = RssSampler([proc.pid for proc in procs])
    sampler.start()
    issue = new_issue()
    sink.reset()
    cpu_before = [cpu_seconds(proc.pid) for proc in procs]
    start = time.perf_counter()
    sending.send_now(issue)
    db.session.commit()
    answered = time.perf_counter() - start
    while True:
        db.session.expire_all()
        status = db.session.scalar(select(Issue.status).where(Issue.id == issue.id))
        db.session.commit()
        if status == "sent":
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    time.sleep(0.3)  # the last work horse is reaped: its CPU joins the parent's
    cpu_after = [cpu_seconds(proc.pid) for proc in procs]
    own = sum(after[0] - before[0] for before, after in zip(cpu_before, cpu_after, strict=True))
    horses = sum(after[1] - before[1] for before, after in zip(cpu_before, cpu_after, strict=True))
    sampler.stopped.set()
    sampler.join()
    assert sink.count == n, f"sink got {sink.count} of {n}"
    assert sink.signed == (n if env.get("DKIM_DOMAIN") else 0), f"{sink.signed} signed"
    return {
        "rate": n / elapsed,
        "cpu_ms": (own + horses) * 1000 / n,
        "worker_cpu_ms": own * 1000 / n,
        "horse_cpu_ms": horses * 1000 / n,
        "answered": answered,
        "first_mail": (sink.first_at - start) if sink.first_at else float("nan"),
        "worker_rss_mb": sampler.peak["worker"] / 2**20,
        "horse_rss_mb": sampler.peak["horse"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=3000)
    parser.add_argument("--database-url")
    parser.add_argument("--dkim", action="store_true", help="DKIM-sign (a temporary key)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (medians printed)")
    parser.add_argument("--meeting", action="store_true", help="send a meeting invitation")
    parser.add_argument(
        "--lean-sink",
        action="store_true",
        help="a minimal SMTP responder instead of aiosmtpd (whose CPU caps both sides)",
    )
    args = parser.parse_args()
    global MEETING
    MEETING = args.meeting

    load_before = os.getloadavg()[0]
    sink, port, controller = start_counting_sink(lean=args.lean_sink)
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        config = {**delivery_config(database_url, redis.url, port), "RATE_LIMITS": False}
        if args.dkim:
            config.update(dkim_settings(tmp))
        env = {**os.environ, **{k: str(v) for k, v in config.items()}, "RATE_LIMITS": "off"}
        app = create_app(config)
        with app.app_context():
            fresh_list(args.n, "group" if args.meeting else "newsletter")
            cost = personalise_cost(min(args.n, 2000)) if args.meeting else None
            baselines = [raw_smtplib(port, args.n) for _ in range(args.runs)]
            baseline = statistics.median(rate for rate, _ in baselines)
            baseline_cpu = statistics.median(cpu for _, cpu in baselines)
            results = {}
            for count in (1, 2):
                procs = start_workers(env, count)
                try:
                    runs = [pipeline(procs, env, sink, args.n) for _ in range(args.runs)]
                finally:
                    stop_workers(procs)
                results[count] = median_of(runs)
            db.drop_all()
    controller.stop()

    kind = database_kind(database_url)
    one, two = results[1], results[2]
    what = "meeting invitation" if args.meeting else "issue"
    print(
        f"{what} delivery to {args.n} subscribers ({kind}), "
        f"one {'lean' if args.lean_sink else 'aiosmtpd'} sink on loopback, "
        f"medians of {args.runs}; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    if cost is not None:
        print(
            f"  personalising one copy (CPU, median of 5): newsletter {cost['plain']:.0f} µs, "
            f"invitation with ATTENDEE/ORGANIZER/RSVP link {cost['meeting']:.0f} µs "
            f"(+{cost['meeting'] - cost['plain']:.0f} µs)"
        )
    if args.dkim:
        print("  DKIM on: the pipeline signs every mail (rsa-sha256, 2048 bits); baseline unsigned")
    print(
        f"  raw smtplib, one connection, pre-rendered: {baseline:8.0f} msg/s, "
        f"{baseline_cpu:.2f} ms CPU/msg  (baseline)"
    )
    for label, result in (("one worker", one), ("two workers", two)):
        print(
            f"  pipeline, {label:11}: {result['rate']:8.0f} msg/s "
            f"= {ratio(result['rate'], baseline)} x baseline; "
            f"{result['cpu_ms']:.2f} ms CPU/msg (all workers) "
            f"= {ratio(baseline_cpu, result['cpu_ms'])} x baseline by CPU "
            f"(worker processes {result['worker_cpu_ms']:.2f}, "
            f"work horses {result['horse_cpu_ms']:.2f}); "
            f"send answered in {result['answered'] * 1000:.0f} ms, "
            f"first mail after {result['first_mail'] * 1000:.0f} ms"
        )
    print(f"  two workers / one worker: {ratio(two['rate'], one['rate'])} x")
    print(
        f"  peak RSS: worker process {one['worker_rss_mb']:.0f} MB, "
        f"work horse (one batch or the fan-out) {one['horse_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
