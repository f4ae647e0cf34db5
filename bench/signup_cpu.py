"""CPU per sign-up in process: `POST /subscribe` through the WSGI callable, as gunicorn calls it.

The app is built from the environment as under gunicorn (`create_app()`, the
settings of `signup_throughput.py --rate-limits`: rate limits on with amounts
never reached, metrics and the access log on), on a temporary SQLite file or
a schema of its own on PostgreSQL, with a private Redis. Each sign-up is the
form `wrk` posts in that benchmark (a new address, `list=zpravodaj`,
`list_choice=1`), its WSGI environ built before the timed block; the block
calls `app(environ, start_response)` and reads the answer, nothing else. It
prints the CPU time (`time.process_time`, this process: Flask, SQLite, the
Redis client; not the Redis server) and the wall time per sign-up, median and
minimum over the blocks. Less noisy than gunicorn under `wrk`, and it needs no
free core for a load generator.

`--profile`: one more block under cProfile (by CPU time), printing the top
functions by own and by cumulative time. Run the access log to /dev/null
(`2>/dev/null`) or it is printed; `ZPRAVODAJ_ROOT=<checkout>` measures an
older checkout with this script.

Run: .venv/bin/python bench/signup_cpu.py [--blocks 15] [--size 300]
     [--postgresql URL] [--profile] 2>/dev/null
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from harness import ROOT

from service.dev.redis_server import PrivateRedis


def settings(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment `signup_throughput.py --rate-limits` gives gunicorn."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": "smtp://127.0.0.1:9",
        "SECRET_KEY": "bench",
        "RATE_LIMITS": "on",
        "RATE_LIMIT_SUBSCRIBE_IP": "100000000 per hour; 10000000 per minute",
        "RATE_LIMIT_SUBSCRIBE_ADDRESS": "5 per hour",
    }


SCHEMA = f"zpravodaj_cpu_{os.getpid()}"


def own_schema(url: str, drop: bool = False) -> str:
    """`url` narrowed to a schema made for this run (as signup_throughput.py does);
    `drop`: drop that schema instead."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql+psycopg")
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        if not drop:
            connection.execute(f"CREATE SCHEMA {SCHEMA}")
    return parsed.update_query_dict({"options": f"-csearch_path={SCHEMA}"}).render_as_string(
        hide_password=False
    )


def environ(prefix: str, n: int) -> dict[str, Any]:
    body = urlencode(
        {"email": f"{prefix}-{n}@seznam.cz", "list": "zpravodaj", "list_choice": "1"}
    ).encode()
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/subscribe",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def block(app: Any, prefix: str, size: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `size` sign-ups."""
    environs = [environ(prefix, n) for n in range(size)]
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        statuses.append(status)

    cpu, wall = time.process_time(), time.perf_counter()
    for each in environs:
        answer = app(each, start_response)
        try:
            b"".join(answer)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    wrong = [s for s in statuses if not s.startswith("202")]
    if wrong:
        raise SystemExit(f"answers other than 202: {wrong[:3]}")
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--postgresql", help="on this PostgreSQL (a schema of its own)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="under `valgrind --tool=callgrind --collect-atstart=no`: collect one block only",
    )
    parser.add_argument("--callers", nargs="*", default=[], help="with --profile: who calls these")
    args = parser.parse_args()
    try:
        measure(args)
    finally:
        if args.postgresql:
            own_schema(args.postgresql, drop=True)


def measure(args: argparse.Namespace) -> None:
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        url = own_schema(args.postgresql) if args.postgresql else f"sqlite:///{tmp}/cpu.sqlite3"
        os.environ.update(settings(url, redis.url))
        from service import create_app
        from service.extensions import db
        from service.models import MailingList

        app = create_app()
        with app.app_context():
            db.create_all()
            db.session.add(MailingList(slug="zpravodaj", name="Zpravodaj"))
            db.session.commit()
            db.session.remove()
        prefix = uuid.uuid4().hex[:8]
        block(app, f"{prefix}-warm", 200)
        if args.callgrind:  # instructions of one block, counted by callgrind: no noise
            subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True)
            block(app, f"{prefix}-counted", args.size)
            subprocess.run(["callgrind_control", "--instr=off", str(os.getpid())], check=True)
            return
        cpu, wall = [], []
        for i in range(args.blocks):
            c, w = block(app, f"{prefix}-{i}", args.size)
            cpu.append(1000 * c / args.size)
            wall.append(1000 * w / args.size)
        print(
            f"{ROOT.name} {'PostgreSQL' if args.postgresql else 'SQLite'}: {args.blocks} blocks of "
            f"{args.size}; CPU per sign-up median {statistics.median(cpu):.3f} ms, "
            f"min {min(cpu):.3f} ms; wall median {statistics.median(wall):.3f} ms, "
            f"min {min(wall):.3f} ms; load {os.getloadavg()[0]:.1f}",
            file=sys.__stdout__,
        )
        if args.profile:
            profile = cProfile.Profile(time.process_time)
            profile.enable()
            block(app, f"{prefix}-profiled", args.size)
            profile.disable()
            for key in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats(key).print_stats(45)
                text = out.getvalue().replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
                print(text, file=sys.__stdout__)
            for name in args.callers:
                out = io.StringIO()
                pstats.Stats(profile, stream=out).print_callers(name)
                text = out.getvalue().replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
                print(text, file=sys.__stdout__)


if __name__ == "__main__":
    main()
