"""Benchmark: POST /subscribe under load against a minimal Flask sign-up (issue 14).

Both run under gunicorn with 2 sync workers, side by side in one run, on the
same database and the same private Redis: the real app (`wsgi:app`), and
bench/minimal_signup_app.py, whose endpoint does one INSERT and one LPUSH.
A load generator posts a new address with every request, 16 connections at
a time: `wrk` when it is installed (`apt-get install wrk`), otherwise a
Python generator with threads. Each side is measured in several alternated
runs; the script prints the medians (sign-ups per second, the 99th
percentile of the answer time, the CPU seconds the gunicorn processes spent
per sign-up) and the ratios to the baseline. Targets from the issue: at least
0.6 × the baseline's throughput, p99 at most 50 ms.

No worker runs: the sign-up jobs wait in Redis, as the baseline's items do.
Rate limits are off (all requests come from one address), unless --rate-limits
turns them on with limits no run reaches: then every sign-up pays their checks
as in production (the baseline has none).

Run: .venv/bin/python bench/signup_throughput.py [--runs 5] [--seconds 5]
     [--connections 16] [--postgresql URL] [--python-load] [--rate-limits]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.dev.processes import free_port  # noqa: E402
from service.dev.redis_server import PrivateRedis  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

WRK_SCRIPT = """
counter = 0
prefix = "%s"
request = function()
  counter = counter + 1
  local body = "email=" .. prefix .. "-" .. counter .. "-" .. math.random(1, 1000000000)
               .. "%%40seznam.cz&list=zpravodaj&list_choice=1"
  return wrk.format("POST", "/subscribe",
                    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""


@dataclass
class Run:
    requests: int
    errors: int
    seconds: float
    p99_ms: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / max(self.requests, 1)


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its children, from /proc, including the
    children that have exited: gunicorn replaces a worker after `max_requests`
    (service/gunicorn_conf.py), and the replaced one's CPU (and its successor's start-up)
    belongs to the sign-ups it served."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if each == pid:  # cutime, cstime: the exited children the master has waited for
            total += (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return total


class Server:
    """gunicorn with 2 sync workers serving `app_spec`, stopped on exit.

    Both sides run with the service's gunicorn settings (the checkout's
    gunicorn.conf.py, named explicitly), so they pay the same per-request hooks
    and the same worker replacement every `max_requests`."""

    def __init__(self, app_spec: str, env: dict[str, str], chdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "--workers",
                "2",
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--config",
                str(ROOT / "gunicorn.conf.py"),
                "--chdir",
                str(chdir),
                "--log-level",
                "warning",
                app_spec,
            ],
            env=env,
            start_new_session=True,
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("gunicorn exited") from None
                time.sleep(0.1)  # polling for the port, not guessing a duration
        raise RuntimeError("gunicorn did not start listening")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def wrk_run(port: int, seconds: float, connections: int) -> tuple[int, int, float, float]:
    """(requests, non-2xx answers, seconds, p99 ms) from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % uuid.uuid4().hex[:8])
    try:
        output = subprocess.run(
            [
                "wrk",
                "--threads",
                "2",
                "--connections",
                str(connections),
                "--duration",
                f"{int(seconds)}s",
                "--latency",
                "--script",
                script.name,
                f"http://127.0.0.1:{port}/subscribe",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    requests = errors = 0
    p99 = float("nan")
    elapsed = seconds
    for line in output.splitlines():
        words = line.split()
        if " requests in " in line:
            requests = int(words[0])
            elapsed = _seconds(words[3].rstrip(","))
        elif words[:1] == ["99%"]:
            p99 = _seconds(words[1]) * 1000
        elif line.strip().startswith("Non-2xx"):
            errors = int(words[-1])
        elif line.strip().startswith("Socket errors"):
            errors += sum(int(w.rstrip(",")) for w in words[3::2])
    return requests, errors, elapsed, p99


def _seconds(text: str) -> float:
    for unit, factor in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def python_run(port: int, seconds: float, connections: int) -> tuple[int, int, float, float]:
    """The same as `wrk_run` with threads (gunicorn's sync workers close every connection)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    prefix = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    deadline = start + seconds

    def load(thread: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            body = urlencode(
                {"email": f"{prefix}-{thread}-{n}@seznam.cz", "list": "zpravodaj", "list_choice": 1}
            )
            began = time.perf_counter()
            connection = HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request(
                    "POST",
                    "/subscribe",
                    body,
                    {"Content-Type": "application/x-www-form-urlencoded"},
                )
                status = connection.getresponse().status
            except OSError:
                status = 0
            finally:
                connection.close()
            with lock:
                latencies.append(time.perf_counter() - began)
                if status != 202:
                    errors[0] += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1 else 0.0
    return len(latencies), errors[0], elapsed, p99


def measure(server: Server, load, seconds: float, connections: int) -> Run:
    cpu_before = process_tree_cpu(server.process.pid)
    requests, errors, elapsed, p99 = load(server.port, seconds, connections)
    cpu = process_tree_cpu(server.process.pid) - cpu_before
    return Run(requests, errors, elapsed, p99, cpu)


def prepare_database(url: str, env: dict[str, str]) -> None:
    """The service's schema and its newsletter, then the baseline's table."""
    code = (
        "from service import create_app\n"
        "from service.extensions import db\n"
        "from service.models import MailingList\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    db.drop_all(); db.create_all()\n"
        "    db.session.add(MailingList(slug='zpravodaj', name='Zpravodaj'))\n"
        "    db.session.commit()\n"
        "import minimal_signup_app as m\n"
        "m.metadata.drop_all(m.engine); m.metadata.create_all(m.engine)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"},
        cwd=ROOT,
        check=True,
    )


def bench(database_url: str, redis_url: str, args: argparse.Namespace) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": "smtp://127.0.0.1:9",  # no worker runs: nothing is ever sent
        "SECRET_KEY": "bench",
        "RATE_LIMITS": "off",
    }
    if args.rate_limits:  # checked and counted on every sign-up, never reached
        env.update(
            RATE_LIMITS="on",
            RATE_LIMIT_SUBSCRIBE_IP="100000000 per hour; 10000000 per minute",
            RATE_LIMIT_SUBSCRIBE_ADDRESS="5 per hour",
        )
    prepare_database(database_url, env)
    load = python_run if args.python_load or not shutil.which("wrk") else wrk_run
    real = Server("wsgi:app", env, ROOT)
    baseline = Server("minimal_signup_app:app", env, ROOT / "bench")
    results: dict[str, list[Run]] = {"real": [], "baseline": []}
    try:
        for server in (real, baseline):  # warm-up: imports, templates, connections
            measure(server, load, 2, args.connections)
        for _ in range(args.runs):  # alternated, so drift hits both alike
            results["real"].append(measure(real, load, args.seconds, args.connections))
            results["baseline"].append(measure(baseline, load, args.seconds, args.connections))
    finally:
        real.stop()
        baseline.stop()
    report(database_url.split(":")[0].split("+")[0], load, results, args)


def report(database: str, load, results: dict[str, list[Run]], args: argparse.Namespace) -> None:
    def median(side: str, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in results[side])

    generator = "wrk" if load is wrk_run else "python threads"
    print(
        f"\n{database}: medians of {args.runs} runs of {args.seconds:g} s, "
        f"{args.connections} connections ({generator}), gunicorn 2 sync workers"
        f"{', rate limits on' if args.rate_limits else ''}"
    )
    print(f"{'':28}{'POST /subscribe':>18}{'INSERT+LPUSH':>16}{'ratio':>9}")
    rows = (
        ("sign-ups per second", "per_second", 0),
        ("p99 answer time (ms)", "p99_ms", 1),
        ("CPU per sign-up (ms)", "cpu_ms_per_request", 2),
    )
    for label, attribute, digits in rows:
        real, baseline = median("real", attribute), median("baseline", attribute)
        print(f"{label:28}{real:18.{digits}f}{baseline:16.{digits}f}{real / baseline:9.2f}")
    errors = {side: sum(run.errors for run in runs) for side, runs in results.items()}
    print(f"{'answers other than 202':28}{errors['real']:18}{errors['baseline']:16}")
    throughput = median("real", "per_second") / median("baseline", "per_second")
    p99 = median("real", "p99_ms")
    print(
        f"target: throughput ≥ 0.6 × ({throughput:.2f} ×: "
        f"{'met' if throughput >= 0.6 else 'NOT met'}), p99 ≤ 50 ms "
        f"({p99:.1f} ms: {'met' if p99 <= 50 else 'NOT met'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgresql", help="also on this PostgreSQL (a schema of its own)")
    parser.add_argument("--python-load", action="store_true", help="threads even if wrk exists")
    parser.add_argument(
        "--rate-limits", action="store_true", help="the sign-up's rate limits on (never reached)"
    )
    args = parser.parse_args()
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        bench(f"sqlite:///{tmp}/bench.sqlite3", redis.url, args)
        if args.postgresql:
            bench(_own_schema(args.postgresql), redis.url, args)


def _own_schema(url: str) -> str:
    """`url` narrowed to a schema made for this run (as the test suite does)."""
    # Imported here: only a run with --postgresql needs the driver.
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql+psycopg")
    schema = f"zpravodaj_bench_{os.getpid()}"
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.execute(f"CREATE SCHEMA {schema}")
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


if __name__ == "__main__":
    main()
