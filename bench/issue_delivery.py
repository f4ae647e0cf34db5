"""Benchmark: delivering an issue through the whole pipeline, against raw smtplib.

In one run, against one local aiosmtpd sink that counts and discards:

1. baseline: raw smtplib sends N pre-rendered messages over one connection;
2. one worker process (`python -m service worker`, forking a work horse per
   batch as in production) delivers a real issue to N confirmed subscribers:
   the web side's `send_now`, fan-out, batches, per-message claims, the
   personalised rendering and SMTP;
3. the same with two worker processes.

Printed (medians of --runs, default 5; the one- and two-worker runs alternate, and
the two / one ratio is also given per pair): msg/s and CPU per message of each
(the workers' CPU with their work horses, from /proc; the baseline's thread
CPU), the pipeline's ratios to the baseline, two workers against one, the time from
"send" to the first mail, and the peak RSS of the worker processes and of
their work horses (sampled from /proc every 100 ms while the issue is sent;
run it with a larger N to see that neither grows with the list).

Run: .venv/bin/python bench/issue_delivery.py [N] [--database-url URL] [--dkim] [--runs R]
[--meeting] [--lean-sink | --sink-processes P] [--parts]
(default N=3000 on a temporary SQLite file; pass a PostgreSQL URL to measure that;
--dkim has the workers DKIM-sign every mail with a temporary 2048-bit key, while
the baseline stays unsigned raw smtplib; --meeting sends a working group's
meeting invitation instead of a newsletter, each copy with its own ATTENDEE,
ORGANIZER and RSVP link, and also prints the CPU time of personalising one
copy with and without the invitation, medians of five runs; --sink-processes P serves
the sink from P aiosmtpd processes, one connection each at a time, for the baseline and
the workers alike; --parts prints the CPU per message of every process involved and the
CPU ceiling on the machine's cores).
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
    sink_thread_id,
    start_counting_sink,
)
from rq import Worker
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

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


def raw_smtplib(port: int, n: int, accounts: CpuAccounts) -> dict[str, float]:
    """msg/s, CPU ms per message (its thread's, and every part's) of raw smtplib over one
    connection, pre-rendered."""
    issue = new_issue()
    skeleton = skeleton_for(issue)
    messages = [
        (f"ctenar{i}@example.cz",
         skeleton.personalise(Recipient(f"ctenar{i}@example.cz", f"Čtenář {i}", f"k{i}"),
                              skeleton.new_message_id(i)))
        for i in range(n)
    ]  # fmt: skip
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as connection:
        accounts.start()
        start, cpu = time.perf_counter(), time.thread_time()
        for address, raw in messages:
            connection.sendmail("zpravodaj@localhost.localdomain", [address], raw)
        rate, cpu_ms = n / (time.perf_counter() - start), (time.thread_time() - cpu) * 1000 / n
        parts = accounts.stop()
    return {
        "rate": rate,
        "cpu_ms": cpu_ms,
        **{f"{part}_cpu_ms": seconds * 1000 / n for part, seconds in parts.items()},
    }


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU of a process itself and of its reaped children (RQ's work
    horses), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    own, children = (int(a) + int(b) for a, b in (fields[11:13], fields[13:15]))
    tick = os.sysconf("SC_CLK_TCK")
    return own / tick, children / tick


def _ticks(path: str) -> int:
    """utime + stime, in clock ticks, of a /proc/…/stat file (0 if it is gone)."""
    try:
        fields = Path(path).read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


class CpuAccounts:
    """The CPU of everything a delivery run makes busy, by part, from /proc: this
    process (the benchmark's own threads) apart from the sink's thread, the sink
    (that thread, or ProcessSink's processes), the private Redis, PostgreSQL's
    backends connected to the benchmark's database (sampled while the run lasts:
    a work horse's connection ends with it) and PostgreSQL's shared processes
    (WAL writer, checkpointer…; shared with whatever else uses that server).
    The workers and their horses are counted by `pipeline` itself."""

    def __init__(self, controller: object, redis_pid: int | None, database: str | None) -> None:
        self.sink_tid = sink_thread_id(controller)
        self.sink_pids = list(getattr(controller, "pids", []))
        self.redis_pid = redis_pid
        self.database = database
        self.backends: dict[int, list[int]] = {}  # pid: [ticks at first sight, latest]
        self.shared: dict[int, list[int]] = {}

    def _postgres(self) -> None:
        if not self.database:
            return
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid not in self.kinds:
                self.kinds[pid] = self._kind(entry.path)
            table = self.kinds[pid]
            if table is None:
                continue
            ticks = _ticks(f"{entry.path}/stat")
            if pid in table:
                table[pid][1] = max(table[pid][1], ticks)
            else:  # first seen: from its current CPU, or from 0 if it began during the run
                table[pid] = [0 if self.started else ticks, ticks]

    def _kind(self, path: str) -> dict[int, list[int]] | None:
        """Which table a process's CPU goes to: a backend of our database, PostgreSQL's
        postmaster or shared processes, or none (anything else, other databases' backends)."""
        try:
            cmdline = Path(path, "cmdline").read_bytes()
        except OSError:
            return None
        if cmdline.split(b"\0")[0].endswith(b"/bin/postgres"):
            return self.shared  # the postmaster, which forks every backend
        if not cmdline.startswith(b"postgres: "):
            return None
        words = cmdline.split()
        if len(words) > 3 and words[3] == self.database.encode():  # type: ignore[union-attr]
            return self.backends
        return self.shared if b"(" not in cmdline else None

    started = False

    def start(self) -> None:
        self.backends, self.shared, self.started = {}, {}, False
        self.kinds: dict[int, dict[int, list[int]] | None] = {}
        self._postgres()
        self.started = True
        self.before = self._fixed()

    def sample(self) -> None:
        self._postgres()

    def _fixed(self) -> dict[str, int]:
        sink = (
            _ticks(f"/proc/self/task/{self.sink_tid}/stat")
            if self.sink_tid
            else sum(_ticks(f"/proc/{pid}/stat") for pid in self.sink_pids)
        )
        own = _ticks("/proc/self/stat")
        return {
            "sink": sink,
            "bench": own - sink if self.sink_tid else own,
            "redis": _ticks(f"/proc/{self.redis_pid}/stat") if self.redis_pid else 0,
        }

    def stop(self) -> dict[str, float]:
        """Seconds of CPU of each part since start()."""
        self._postgres()
        after = self._fixed()
        tick = os.sysconf("SC_CLK_TCK")
        result = {key: (after[key] - self.before[key]) / tick for key in after}
        result["postgres"] = sum(b - a for a, b in self.backends.values()) / tick
        result["postgres_shared"] = sum(b - a for a, b in self.shared.values()) / tick
        return result


class RssSampler(threading.Thread):
    """Peak resident memory of some processes and of their children, from /proc."""

    def __init__(self, pids: list[int], accounts: CpuAccounts | None = None) -> None:
        super().__init__(daemon=True)
        self.pids = set(pids)
        self.accounts = accounts
        self.peak = {"worker": 0, "horse": 0}
        self.stopped = threading.Event()

    @staticmethod
    def _rss(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def run(self) -> None:
        # Every 100 ms (it was 20): a worker's memory moves with its batches, over
        # seconds, and the sampler's CPU is spent on the cores the measured parts share.
        while not self.stopped.wait(0.1):
            if self.accounts:  # PostgreSQL's backends
                self.accounts.sample()
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


def pipeline(
    procs: list[subprocess.Popen], env: dict, sink: CountingSink, n: int, accounts: CpuAccounts
) -> dict:
    """Deliver one issue with the running workers: msg/s, CPU per message (the workers'
    and every other part's), first mail, RSS."""
    sampler = RssSampler([proc.pid for proc in procs], accounts)
    issue = new_issue()
    sink.reset()
    accounts.start()
    sampler.start()
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
    parts = accounts.stop()
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
        **{f"{part}_cpu_ms": seconds * 1000 / n for part, seconds in parts.items()},
        "elapsed": elapsed,
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
    parser.add_argument(
        "--sink-processes",
        type=int,
        default=0,
        metavar="P",
        help="aiosmtpd in P processes, each serving one connection at a time, as an MTA "
        "serves concurrent connections in parallel (default: one thread of this process)",
    )
    parser.add_argument(
        "--parts", action="store_true", help="print the CPU per message of every process"
    )
    args = parser.parse_args()
    global MEETING
    MEETING = args.meeting

    load_before = os.getloadavg()[0]
    if args.lean_sink and args.sink_processes:
        parser.error("--lean-sink runs in one thread; it takes no --sink-processes")
    sink, port, controller = start_counting_sink(args.lean_sink, args.sink_processes)
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        accounts = CpuAccounts(
            controller,
            redis._process.pid if redis._process else None,
            make_url(database_url).database if database_url.startswith("postgres") else None,
        )
        config = {**delivery_config(database_url, redis.url, port), "RATE_LIMITS": False}
        if args.dkim:
            config.update(dkim_settings(tmp))
        env = {**os.environ, **{k: str(v) for k, v in config.items()}, "RATE_LIMITS": "off"}
        app = create_app(config)
        with app.app_context():
            fresh_list(args.n, "group" if args.meeting else "newsletter")
            cost = personalise_cost(min(args.n, 2000)) if args.meeting else None
            raw = median_of([raw_smtplib(port, args.n, accounts) for _ in range(args.runs)])
            baseline, baseline_cpu = raw["rate"], raw["cpu_ms"]
            # One worker and two alternate, run after run, so both meet the machine in
            # the same state (a shared machine's load moves within minutes); each run
            # starts its workers afresh, as the first run of each always did.
            runs: dict[int, list[dict]] = {1: [], 2: []}
            for _ in range(args.runs):
                for count in (1, 2):
                    procs = start_workers(env, count)
                    try:
                        runs[count].append(pipeline(procs, env, sink, args.n, accounts))
                    finally:
                        stop_workers(procs)
            results = {count: median_of(runs[count]) for count in (1, 2)}
            pair_ratios = sorted(
                two["rate"] / one["rate"] for one, two in zip(runs[1], runs[2], strict=True)
            )
            db.drop_all()
    controller.stop()

    kind = database_kind(database_url)
    one, two = results[1], results[2]
    sink_name = (
        f"aiosmtpd in {args.sink_processes} processes"
        if args.sink_processes
        else "lean"
        if args.lean_sink
        else "aiosmtpd"
    )
    what = "meeting invitation" if args.meeting else "issue"
    print(
        f"{what} delivery to {args.n} subscribers ({kind}), "
        f"one {sink_name} sink on loopback, "
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
    print(
        f"  two workers / one worker: {ratio(two['rate'], one['rate'])} x "
        f"(of the medians); each run's pair: median {statistics.median(pair_ratios):.2f} x, "
        f"{' '.join(f'{r:.2f}' for r in pair_ratios)}"
    )
    if args.parts:
        print_parts(raw, one, two, bool(args.sink_processes))
    print(
        f"  peak RSS: worker process {one['worker_rss_mb']:.0f} MB, "
        f"work horse (one batch or the fan-out) {one['horse_rss_mb']:.0f} MB"
    )


PARTS = (
    ("bench", "benchmark process (without the sink)"),
    ("sink", "sink"),
    ("worker", "worker processes"),
    ("horse", "work horses"),
    ("postgres", "PostgreSQL backends of this database"),
    ("postgres_shared", "PostgreSQL shared (postmaster, WAL writer…)"),
    ("redis", "Redis"),
)


def print_parts(raw: dict, one: dict, two: dict, sink_in_processes: bool) -> None:
    """CPU per message of each process, and what they allow on the machine's cores."""
    print("  CPU per message, ms, by process (medians):      raw smtplib  one worker  two workers")
    totals = {}
    for label, result in (("raw", raw), ("one", one), ("two", two)):
        totals[label] = sum(result.get(f"{part}_cpu_ms", 0.0) for part, _ in PARTS)
    for part, name in PARTS:
        print(
            f"    {name:45} {raw.get(f'{part}_cpu_ms', 0.0):11.3f} {one[f'{part}_cpu_ms']:11.3f} "
            f"{two[f'{part}_cpu_ms']:12.3f}"
        )
    print(
        f"    {'all of them':45} {totals['raw']:11.3f} {totals['one']:11.3f} {totals['two']:12.3f}"
    )
    cores = os.cpu_count() or 1
    for label, result in (("one worker", one), ("two workers", two)):
        busy = totals["one" if label == "one worker" else "two"]
        print(
            f"  {label}: all parts busy {busy * result['rate'] / 1000:.2f} of {cores} cores; "
            f"CPU ceiling on {cores} cores {cores * 1000 / busy:.0f} msg/s"
            + (
                ""
                if sink_in_processes
                else f"; the sink's one thread caps at {1000 / result['sink_cpu_ms']:.0f} msg/s"
                f" ({result['sink_cpu_ms'] * result['rate'] / 1000:.2f} of a core busy)"
            )
        )


if __name__ == "__main__":
    main()
