"""The release as an operator installs it: a wheel in a fresh virtual environment.

The wheel is built from this checkout and installed into a new venv in a
temporary folder far from it; every command then runs from there, with the
checkout nowhere on the path, as the systemd units and compose.yaml run them
(tests/test_deploy.py's COMMANDS): `zpravodaj db upgrade`, the web under
gunicorn, `zpravodaj worker` and the bounce receiver. A sign-up travels
through them to a captured confirmation mail, is confirmed, and a bounce
received over SMTP suppresses another address.

The new venv gets exactly the locked runtime releases (requirements/runtime.txt,
what the image and an operator install) from .venv by symlinks (fast, and
offline), none of the test tools, and never the project itself: `service` and
`workers` come from the wheel alone, so a template, static file or migration
missing from the wheel fails here, and so does a dependency missing from the
runtime set.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from redis import Redis

from service.dev.processes import free_port
from tests.bounces.test_bounces import bounce_bytes
from tests.conftest import link_to
from tests.test_deploy import COMMANDS, WORKER_PYTHON
from tests.waiting import exited, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
SITE = Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(str(VENV))))
# What of .venv's site-packages the new venv must not see: the project itself.
PROJECT_ENTRIES = ("zpravodaj-", "_zpravodaj", "__editable__", "service", "workers", "__pycache__")
TIMEOUT = 90


def _build_wheel(into: Path) -> Path:
    """`pip wheel` of the checkout, by .venv's (locked) hatchling, without the network."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(into), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = into.glob("zpravodaj-*.whl")
    return wheel


def _runtime_entries() -> set[str]:
    """The names in site-packages of the runtime lock's releases (packages, modules and
    their dist-info), as far as they are installed here (a release for another platform
    or Python version is not)."""
    pinned = re.findall(
        r"^([A-Za-z0-9_.-]+)==", (ROOT / "requirements" / "runtime.txt").read_text(), re.M
    )
    entries: set[str] = set()
    for name in pinned:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        entries.update(file.parts[0] for file in files if file.parts[0] != "..")
    return entries


def _fresh_venv(path: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed, and .venv's runtime releases linked in."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120
    )
    python = path / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [site] = (path / "lib").glob("python3*/site-packages")
    runtime = _runtime_entries()
    for entry in SITE.iterdir():
        if entry.name.startswith(PROJECT_ENTRIES) or (site / entry.name).exists():
            continue
        if entry.name in runtime:
            (site / entry.name).symlink_to(entry)
    # The dependencies' console scripts the commands use, run by the new venv's Python.
    for program in {command[0] for command in COMMANDS.values()}:
        script = path / "bin" / program
        if not script.exists():
            body = (VENV / "bin" / program).read_text().split("\n", 1)[1]
            script.write_text(f"#!{python}\n{body}")
            script.chmod(0o755)
    return path / "bin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> Path:
    """The bin/ folder of a fresh venv holding the wheel."""
    return _fresh_venv(tmp_path_factory.mktemp("wheel") / "venv", wheel)


def test_the_wheel_carries_the_catalogues_compiled(wheel):
    """The .mo files are not in git: the build hook (hatch_build.py) compiles them."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for language in ("cs", "en"):
            assert f"service/translations/{language}/LC_MESSAGES/messages.po" in names
            assert f"service/translations/{language}/LC_MESSAGES/messages.mo" in names
        compiled = archive.read("service/translations/en/LC_MESSAGES/messages.mo")
    assert read_mo(io.BytesIO(compiled)).get("Neplatný e-mail.").string == "Invalid e-mail address."


@pytest.fixture
def environment(installed, tmp_path, redis_url, outbox) -> dict[str, str]:
    Redis.from_url(redis_url).flushdb()
    instance = tmp_path / "instance"
    return {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": f"sqlite:///{instance}/zpravodaj.sqlite3",
        "REDIS_URL": redis_url,
        "SMTP_URL": outbox.url,
        "SECRET_KEY": "klíč-instalace-z-wheelu",
        "BASE_URL": "http://zpravodaj.test",
        "MAIL_FROM": "Zpravodaj sociálního bydlení <zpravodaj@socialnibydleni.example>",
        "RATE_LIMITS": "off",
        "WEB_BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "1",
        "BOUNCE_SMTP_HOST": "127.0.0.1",
        "BOUNCE_SMTP_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }


def run(environment: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(args), cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


PROCESSES: list[subprocess.Popen] = []  # those `started` runs, watched by wait_for


def worker_environment(environment: dict[str, str], cwd: Path) -> dict[str, str]:
    """The worker's as its unit runs it: optimised (-OO), its bytecode compiled first
    (the unit's ExecStartPre) into a cache prefix, the installation read-only to it."""
    env = {
        **environment, **WORKER_PYTHON, "PYTHONPYCACHEPREFIX": str(cwd / "bytecode"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }  # fmt: skip
    result = subprocess.run(
        ["python", "-P", "-m", "service.bytecode"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return env


@contextlib.contextmanager
def started(environment: dict[str, str], cwd: Path) -> Iterator[dict[str, Path]]:
    """The web, a worker and the bounce receiver, each with its own log file."""
    processes, logs = PROCESSES, {}
    processes.clear()
    try:
        for part in ("web", "worker", "bounces"):
            logs[part] = cwd / f"{part}.log"
            with logs[part].open("wb") as log:
                env = worker_environment(environment, cwd) if part == "worker" else environment
                processes.append(subprocess.Popen(
                    COMMANDS[part], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                ))  # fmt: skip
        yield logs
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def wait_for(condition, what: str, logs: dict[str, Path]):
    """Wait until `condition()` is true; fail at once when a started process has exited."""

    def shown() -> str:
        return "\n".join(
            f"--- {name}\n{path.read_text(errors='replace')}" for name, path in logs.items()
        )

    return wait_until(
        condition, what, timeout=TIMEOUT, interval=0.2, details=shown,
        abort=lambda: next(filter(None, map(exited, PROCESSES)), None),
    )  # fmt: skip


def http(base: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(base + path, data=data, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_installed_wheel_runs_a_sign_up_to_the_confirmation_mail(
    installed, environment, outbox, tmp_path
):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    python = str(installed / "python")
    # The package is the wheel's, its files inside it; the checkout is not on the path.
    code = "import service, service.paths as p; print(service.__file__, p.installed())"
    where = run(environment, cwd, python, "-c", code)
    assert where.stdout.startswith(str(installed.parent)) and where.stdout.split()[1] == "True"
    assert (
        str(ROOT) not in run(environment, cwd, python, "-c", "import sys; print(sys.path)").stdout
    )
    assert run(environment, cwd, "zpravodaj", "--version").stdout.startswith("zpravodaj ")

    run(environment, cwd, *COMMANDS["migrate"])
    run(environment, cwd, "zpravodaj", "lists", "create", "zpravodaj", "--name", "Zpravodaj")
    base = "http://" + environment["WEB_BIND"]
    with started(environment, cwd) as logs:
        wait_for(lambda: http(base, "/healthz")[0] == 200, "the web answers /healthz", logs)
        status, page = http(base, "/subscribe")
        assert status == 200 and "Neplatný e-mail." not in page and "<form" in page
        assert http(base, "/static/zpravodaj.css")[0] == 200
        # The catalogues compiled into the wheel: the same page in English.
        status, page = http(base, "/subscribe?lang=en")
        assert status == 200 and "Subscribe" in page and '<html lang="en">' in page

        for address in ("jana.novakova@seznam.cz", "neexistuje@example.cz"):
            assert http(base, "/subscribe", {"email": address, "list": "zpravodaj"})[0] == 202
        mails = wait_for(
            lambda: len(outbox.mails) == 2 and {m.rcpt_tos[0]: m for m in outbox.mails},
            "two confirmation mails",
            logs,
        )
        confirm = urllib.parse.urlsplit(link_to(mails["jana.novakova@seznam.cz"], "/confirm/"))
        status, page = http(base, confirm.path, {})
        assert (status, "Odběr je potvrzen" in page) == (200, True)

        # A hard bounce of the other confirmation mail, over SMTP to the receiver.
        bounced = mails["neexistuje@example.cz"]
        port = int(environment["BOUNCE_SMTP_PORT"])
        wait_for(lambda: listening(port), "the bounce receiver listens", logs)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail("", [bounced.mail_from], bounce_bytes("gmail_hard.eml", bounced))

    exported = run(environment, cwd, "zpravodaj", "subscribers", "export", "--list", "zpravodaj")
    statuses = {row["email"]: row["status"] for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert statuses == {"jana.novakova@seznam.cz": "confirmed", "neexistuje@example.cz": "bounced"}
    for part, path in logs.items():
        assert "Traceback" not in path.read_text(errors="replace"), part
    # Optimised on the bytecode compiled before it started: nothing compiled from source.
    assert "compiled from source" not in logs["worker"].read_text(errors="replace")
