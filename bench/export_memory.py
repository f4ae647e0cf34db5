"""Benchmark: the peak memory of `zpravodaj subscribers export` for a large list.

In one run, on a list of N confirmed subscribers (default 1,000,000; seeded as
bench/fan_out.py seeds them):

1. baseline: `python -m service lists show` in a fresh process, which loads
   the same app and reads almost nothing: what any command weighs;
2. `python -m service subscribers export --list zpravodaj > /dev/null`: its
   peak RSS (the child's ru_maxrss), rows/s, and the lines it wrote.

The target (issue 14) is 80 MB whatever N: the rows stream (a server-side
cursor on PostgreSQL, 1,000 rows a fetch) and leave as 64 KiB pieces.

Run: .venv/bin/python bench/export_memory.py [N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from csv_import import own_schema
from fan_out import seed

from service import create_app
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.models import MailingList

TARGET_MB = 80
# Runs the CLI and reports its own high-water RSS at exit: VmHWM belongs to the
# process image (a forked child's ru_maxrss would include the parent's size).
WRAPPER = (
    "import atexit, runpy, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('\\n' + line)\n"
    "atexit.register(hwm)\n"
    "sys.argv = ['zpravodaj', *sys.argv[1:]]\n"
    "runpy.run_module('service', run_name='__main__')\n"
)


def peak_rss_of(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, output lines) of one command in a fresh process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, *args],
            env=env, stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
        assert process.stdout is not None
        lines = sum(c.count(b"\n") for c in iter(lambda: process.stdout.read(1 << 16), b""))
        assert process.wait() == 0, f"{args} failed"
        errors.seek(0)
        hwm = [line for line in errors.read().decode().splitlines() if line.startswith("VmHWM:")]
    return int(hwm[-1].split()[1]) / 1024, time.perf_counter() - start, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with (
        PrivateRedis() as redis,
        tempfile.TemporaryDirectory() as tmp,
        own_schema(args.database_url, tmp) as database_url,
    ):
        config = {
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "SECRET_KEY": "bench",
            "SMTP_URL": "smtp://127.0.0.1:9",
        }  # fmt: skip
        app = create_app({**config, "RATE_LIMITS": False})
        with app.app_context():
            db.drop_all()
            db.create_all()
            mailing_list = MailingList(slug="zpravodaj", name="Zpravodaj")
            db.session.add(mailing_list)
            db.session.commit()
            seed(args.n, mailing_list.id)
            db.session.remove()
            env = {**os.environ, **config, "RATE_LIMITS": "off", "INSTANCE_PATH": tmp}
            baseline, _, _ = peak_rss_of(["lists", "show"], env)
            export, seconds, lines = peak_rss_of(
                ["subscribers", "export", "--list", "zpravodaj"], env
            )
            db.drop_all()
            db.engine.dispose()
    assert lines == args.n + 1, (lines, args.n)
    kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    verdict = "reached" if export <= TARGET_MB else "not reached"
    print(f"zpravodaj subscribers export of {args.n:,} subscribers ({kind})")
    print(f"  `zpravodaj lists show` (baseline, same app): {baseline:6.1f} MB peak RSS")
    print(
        f"  `zpravodaj subscribers export`:              {export:6.1f} MB peak RSS "
        f"= baseline + {export - baseline:.1f} MB; target {TARGET_MB} MB {verdict}"
    )
    print(f"  {args.n / seconds:,.0f} rows/s ({seconds:.1f} s, process start included)")


if __name__ == "__main__":
    main()
