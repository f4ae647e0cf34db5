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

The gunicorn processes are not all the CPU a sign-up takes on the machine: the
Redis server's (its INFO's used_cpu_*) and the load generator's (wrk's, or this
process's threads) are printed per sign-up beside them, and their sum ("machine").
With --split, both sides are served through bench/cpu_split_app.py, which splits
the gunicorn processes' CPU into the app's WSGI call and the rest (gunicorn's
own work and the kernel's for the connection), each in user and system time.

No worker runs: the sign-up jobs wait in Redis, as the baseline's items do.
Rate limits are off (all requests come from one address), unless --rate-limits
turns them on with limits no run reaches: then every sign-up pays their checks
as in production (the baseline has none).

Run: .venv/bin/python bench/signup_throughput.py [--runs 5] [--seconds 5]
     [--connections 16] [--postgresql URL] [--python-load] [--rate-limits] [--split]
"""

from __future__ import annotations

import argparse
import os
import resource
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
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from service.dev.processes import free_port  # noqa: E402
from service.dev.redis_server import PrivateRedis  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A load generator: (port, seconds, connections) -> (requests, errors, seconds, p99 ms).
Load = Callable[[int, float, int], tuple[int, int, float, float]]

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
    redis_cpu_seconds: float = 0.0
    load_cpu_seconds: float = 0.0
    # --split: requests the workers counted, and their CPU seconds (user, system) inside
    # the app's WSGI call and in the whole process
    split: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def _per_request(self, seconds: float) -> float:
        return 1000 * seconds / max(self.requests, 1)

    @property
    def cpu_ms_per_request(self) -> float:
        return self._per_request(self.cpu_seconds)

    @property
    def redis_ms_per_request(self) -> float:
        return self._per_request(self.redis_cpu_seconds)

    @property
    def load_ms_per_request(self) -> float:
        return self._per_request(self.load_cpu_seconds)

    @property
    def machine_ms_per_request(self) -> float:
        return self._per_request(self.cpu_seconds + self.redis_cpu_seconds + self.load_cpu_seconds)

    def _split_ms(self, index: int) -> float:
        return 1000 * self.split[index] / max(self.split[0], 1)

    @property
    def app_user_ms(self) -> float:
        return self._split_ms(1)

    @property
    def app_system_ms(self) -> float:
        return self._split_ms(2)

    @property
    def around_user_ms(self) -> float:
        return self._split_ms(3) - self._split_ms(1)

    @property
    def around_system_ms(self) -> float:
        return self._split_ms(4) - self._split_ms(2)


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

    def __init__(
        self, app_spec: str, env: dict[str, str], chdir: Path, split_dir: Path | None = None
    ) -> None:
        self.port = free_port()
        self.split_dir = split_dir
        # This checkout first: gunicorn reads its config file (which imports
        # service.gunicorn_conf) before it changes into `chdir`, and an editable install
        # of another checkout in the same virtualenv would otherwise provide `service`.
        given = env.get("PYTHONPATH")  # a caller's own (signup_lock_probe.py's), then these
        env = {**env, "PYTHONPATH": ":".join(filter(None, (given, str(ROOT), str(ROOT / "bench"))))}
        if split_dir is not None:  # served through the wrapper that splits the CPU
            split_dir.mkdir()
            env = {**env, "SPLIT_APP": app_spec, "SPLIT_DIR": str(split_dir)}
            app_spec = "cpu_split_app:app"
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

    def split_totals(self) -> list[float]:
        """The workers' sums (bench/cpu_split_app.py), those replaced included."""
        totals = [0.0] * 5
        if self.split_dir is not None:
            for each in self.split_dir.glob("[0-9]*"):  # one per process, written whole
                values = [float(word) for word in each.read_text().split()]
                totals = [a + b for a, b in zip(totals, values, strict=True)]
        return totals


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


def redis_cpu(client: Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def load_cpu(load: Load) -> float:
    """CPU seconds of the load generator so far: wrk's (a child waited for), or this
    process's own threads."""
    if load is wrk_run:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return children.ru_utime + children.ru_stime
    return time.process_time()


def measure(server: Server, load: Load, seconds: float, connections: int, redis: Redis) -> Run:
    cpu_before = process_tree_cpu(server.process.pid)
    redis_before, load_before = redis_cpu(redis), load_cpu(load)
    split_before = server.split_totals()
    requests, errors, elapsed, p99 = load(server.port, seconds, connections)
    cpu = process_tree_cpu(server.process.pid) - cpu_before
    redis_used, load_used = redis_cpu(redis) - redis_before, load_cpu(load) - load_before
    after = server.split_totals()
    split = (
        after[0] - split_before[0],
        after[1] - split_before[1],
        after[2] - split_before[2],
        after[3] - split_before[3],
        after[4] - split_before[4],
    )
    return Run(requests, errors, elapsed, p99, cpu, redis_used, load_used, split)


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
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE", "REDIS")) and k != "PYTHONPATH"  # Server's own
        },
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
    redis = Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as split_dir:
        real = Server("wsgi:app", env, ROOT, Path(split_dir, "real") if args.split else None)
        baseline = Server(
            "minimal_signup_app:app",
            env,
            ROOT / "bench",
            Path(split_dir, "baseline") if args.split else None,
        )
        results: dict[str, list[Run]] = {"real": [], "baseline": []}
        try:
            for server in (real, baseline):  # warm-up: imports, templates, connections
                measure(server, load, 2, args.connections, redis)
            for _ in range(args.runs):  # alternated, so drift hits both alike
                for side, server in (("real", real), ("baseline", baseline)):
                    results[side].append(
                        measure(server, load, args.seconds, args.connections, redis)
                    )
        finally:
            real.stop()
            baseline.stop()
    report(database_url.split(":")[0].split("+")[0], load, results, args)


def report(
    database: str, load: Load, results: dict[str, list[Run]], args: argparse.Namespace
) -> None:
    def median(side: str, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in results[side])

    generator = "wrk" if load is wrk_run else "python threads"
    print(
        f"\n{database}: medians of {args.runs} runs of {args.seconds:g} s, "
        f"{args.connections} connections ({generator}), gunicorn 2 sync workers"
        f"{', rate limits on' if args.rate_limits else ''}"
    )
    print(f"{'':28}{'POST /subscribe':>18}{'INSERT+LPUSH':>16}{'ratio':>9}")
    rows = [
        ("sign-ups per second", "per_second", 0),
        ("p99 answer time (ms)", "p99_ms", 1),
        ("CPU per sign-up (ms)", "cpu_ms_per_request", 2),
        ("  Redis server's (ms)", "redis_ms_per_request", 3),
        ("  load generator's (ms)", "load_ms_per_request", 3),
        ("  machine: all three (ms)", "machine_ms_per_request", 2),
    ]
    if args.split:
        rows += [
            ("  in the app call: user", "app_user_ms", 3),
            ("  in the app call: system", "app_system_ms", 3),
            ("  around it: user", "around_user_ms", 3),
            ("  around it: system", "around_system_ms", 3),
        ]
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
    parser.add_argument(
        "--split",
        action="store_true",
        help="split the gunicorn processes' CPU: the app's WSGI call, and around it",
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
