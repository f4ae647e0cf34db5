"""The Dockerfile, carried out without a container engine.

No container engine runs on these machines (and no registry serves the base
image), so this test does what `docker build` and `docker run` would, in a
temporary folder that stands in for each stage's file system: every
instruction of the Dockerfile in order, its `COPY`s from the checkout (or the
build stage), its `ENV`, its `WORKDIR`, and its `RUN` steps with their paths
moved into that folder and `python` being a fresh venv standing in for the
base image's. Only `useradd`, which needs root and changes the machine, is
left out (the entrypoint makes the directory it also made). Then the image's
`ENTRYPOINT` runs its `CMD` (the web) and the other parts' commands, as
compose.yaml does.

The `RUN` steps install exactly the locked releases from PyPI with
`--require-hashes`, as the image build does: this needs the package index.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis

from service.dev.processes import free_port
from tests.conftest import missing_part
from tests.test_deploy import COMMANDS, WORKER_PYTHON
from tests.waiting import exited, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

ROOT = Path(__file__).resolve().parent.parent
# The image's own folders; any of them named in an instruction is moved into the stand-in.
IMAGE_FOLDERS = ("/src", "/dist", "/opt", "/tmp", "/var", "/run", "/usr/local")
IMAGE_PATH = re.compile(r"(?<![\w./$-])(" + "|".join(map(re.escape, IMAGE_FOLDERS)) + r")(?=/|\b)")
LEFT_OUT = ("useradd ",)  # needs root and a user database: not on a test machine
STEP_TIMEOUT = 600
# What the network needs, never what the machine's pip is configured with.
NETWORK_VARIABLES = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


@dataclass
class Stage:
    name: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def inside(self, path: str) -> Path:
        """A path of the image, in the stand-in."""
        absolute = path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"
        return self.root / absolute.lstrip("/")

    def moved(self, text: str) -> str:
        """A shell text or a value with the image's folders moved into the stand-in."""
        return IMAGE_PATH.sub(lambda match: str(self.root) + match.group(1), text)


def instructions(dockerfile: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, its arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            yield word.upper(), rest.strip()


def base_python(root: Path) -> dict[str, str]:
    """The base image's Python: a fresh venv at <root>/usr/local, and its environment."""
    subprocess.run([sys.executable, "-m", "venv", str(root / "usr" / "local")],
                   check=True, timeout=STEP_TIMEOUT)  # fmt: skip
    env = {"PATH": f"{root}/usr/local/bin:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}
    env["PIP_CONFIG_FILE"] = os.devnull  # the image has no pip configuration of this machine's
    env.update({name: os.environ[name] for name in NETWORK_VARIABLES if name in os.environ})
    return env


def copy(stage: Stage, arguments: str, stages: dict[str, Stage]) -> None:
    words = shlex.split(arguments)
    source_root, options = ROOT, [word for word in words if word.startswith("--")]
    for option in options:
        if option.startswith("--from="):
            source_root = stages[option.removeprefix("--from=")].root
    *sources, destination = [word for word in words if not word.startswith("--")]
    target = stage.inside(destination)
    for source in sources:
        origin = source_root / source.lstrip("/")
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        else:
            into = target / origin.name if destination.endswith("/") else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, into)


def set_env(stage: Stage, arguments: str) -> None:
    for assignment in shlex.split(arguments):
        name, _, value = assignment.partition("=")
        # Moved first: the values of variables are already moved.
        stage.env[name] = re.sub(r"\$(\w+)", lambda m: stage.env.get(m.group(1), ""),
                                 stage.moved(value))  # fmt: skip


def run_step(stage: Stage, command: str) -> None:
    if command.startswith(LEFT_OUT):
        stage.left_out.append(command)
        return
    workdir = stage.inside(stage.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    moved = stage.moved(command)
    # Nothing outside the stand-in may be written (or removed: `rm -rf /tmp/dist`).
    outside = [word for word in shlex.split(moved) if word.startswith("/")
               and not word.startswith(str(stage.root))]  # fmt: skip
    assert not outside, f"RUN {command}: paths outside the image's folders: {outside}"
    result = subprocess.run(
        ["/bin/sh", "-c", moved], cwd=workdir, env=stage.env,
        capture_output=True, text=True, timeout=STEP_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0 and "pip install" in command and _offline(result.stderr):
        missing_part(f"the package index cannot be reached for `RUN {command[:60]}…`")
    assert result.returncode == 0, f"RUN {command}\n{result.stdout}\n{result.stderr}"


def _offline(stderr: str) -> bool:
    return any(
        words in stderr
        for words in ("NewConnectionError", "Temporary failure in name resolution",
                      "Network is unreachable", "Could not fetch URL")
    )  # fmt: skip


def build(dockerfile: str, into: Path) -> Stage:
    """Carry out the Dockerfile's instructions; the last stage, as the image."""
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for word, arguments in instructions(dockerfile):
        if word == "FROM":
            name = arguments.split()[-1] if " AS " in arguments.upper() else str(len(stages))
            root = into / name
            stage = stages[name] = Stage(name, root, env=base_python(root))
            continue
        if word in ("ARG", "USER", "VOLUME", "EXPOSE"):
            continue  # the base image's name; the user, volume and ports: an engine's business
        assert stage is not None, f"{word} before FROM"
        if word == "COPY":
            copy(stage, arguments, stages)
        elif word == "ENV":
            set_env(stage, arguments)
        elif word == "WORKDIR":
            stage.workdir = arguments
            stage.inside(arguments).mkdir(parents=True, exist_ok=True)
        elif word == "RUN":
            run_step(stage, arguments)
        elif word in ("ENTRYPOINT", "CMD"):
            setattr(stage, word.lower(), json.loads(arguments))
        else:
            pytest.fail(f"an instruction this test cannot carry out: {word} {arguments}")
    assert stage is not None
    return stage


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Stage:
    built = build((ROOT / "Dockerfile").read_text(), tmp_path_factory.mktemp("image"))
    assert [step.split()[0] for step in built.left_out] == ["useradd"]
    return built


@contextlib.contextmanager
def container(image: Stage, command: list[str], log: Path, **env: str) -> Iterator:
    """One part, started as the image starts it: ENTRYPOINT, then the command."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*image.entrypoint, *command], cwd=image.inside(image.workdir),
            env={**image.env, **env}, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_the_dockerfile_builds_and_its_parts_run(image, tmp_path, redis_url, outbox):
    Redis.from_url(redis_url).flushdb()
    metrics = Path(image.env["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics == image.inside("/run/zpravodaj-metrics")
    settings = {
        "DATABASE_URL": f"sqlite:///{image.env['INSTANCE_PATH']}/zpravodaj.sqlite3",
        "REDIS_URL": redis_url, "SMTP_URL": outbox.url, "SECRET_KEY": "klíč-z-obrazu",
        "BASE_URL": "http://zpravodaj.test",
        "MAIL_FROM": "Zpravodaj sociálního bydlení <zpravodaj@socialnibydleni.example>",
        # What `docker run -p` would map; the image listens on 0.0.0.0:8000.
        "WEB_BIND": f"127.0.0.1:{free_port()}", "WEB_CONCURRENCY": "2",
    }  # fmt: skip
    env = {**image.env, **settings}

    def run(*command: str) -> str:
        result = subprocess.run(
            [*image.entrypoint, *command], cwd=image.inside(image.workdir), env=env,
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
        return result.stdout

    assert run("zpravodaj", "--version").startswith("zpravodaj ")
    run(*COMMANDS["migrate"])
    # The container's earlier run left counts behind: the entrypoint empties the directory.
    metrics.mkdir(parents=True, exist_ok=True)
    (metrics / "counter_1.db").write_bytes(b"counts of the container's earlier run")
    web_log = tmp_path / "web.log"
    with container(image, image.cmd, web_log, **settings) as web:
        base = "http://" + settings["WEB_BIND"]
        wait_until(
            lambda: get(f"{base}/healthz")[0] == 200, "the image's web to answer /healthz",
            ignore=(OSError,), abort=lambda: exited(web), details=web_log.read_text,
        )  # fmt: skip
        assert image.cmd == COMMANDS["web"]
        _, page = get(f"{base}/metrics")
        assert 'zpravodaj_http_requests_total{endpoint="health.healthz"' in page, page
        files = {path.name for path in metrics.iterdir()}
        assert "counter_1.db" not in files and any(name.startswith("counter_") for name in files)

    # A worker container: its own metrics on METRICS_PORT, optimised (compose.yaml).
    port = free_port()
    worker_log = tmp_path / "worker.log"
    with container(image, COMMANDS["worker"], worker_log, **settings, **WORKER_PYTHON,
                   METRICS_PORT=str(port), METRICS_HOST="127.0.0.1") as worker:  # fmt: skip
        # Its counts appear once it has counted; an answer shows it serves the directory.
        wait_until(
            lambda: get(f"http://127.0.0.1:{port}/metrics")[0] == 200,
            "the worker's metrics port", ignore=(OSError,), abort=lambda: exited(worker),
            details=worker_log.read_text,
        )  # fmt: skip
    assert "Traceback" not in web_log.read_text() + worker_log.read_text()
    # The image may not write (PYTHONDONTWRITEBYTECODE): its build compiled the bytecode.
    assert "compiled from source" not in worker_log.read_text()
