"""The web app under gunicorn and a forking worker, sharing PROMETHEUS_MULTIPROC_DIR.

Real processes, as production runs them: gunicorn with two processes serves
the sign-ups and /metrics, `zpravodaj worker --burst` (a work horse forked
per job) sends the confirmations, and one scrape adds up every process's
counts. Under gunicorn the service's INFO lines reach stderr as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from service import create_app
from service.dev.processes import free_port
from service.extensions import db
from tests.conftest import make_config, seed_lists
from tests.waiting import exited, wait_until

PROJECT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60


def _request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@pytest.fixture
def config(tmp_path, redis_url, outbox) -> Iterator[dict]:
    """A migrated SQLite file, the test Redis and sink: shared by this process and the others."""
    config = make_config(f"sqlite:///{tmp_path / 'shared.sqlite3'}", redis_url, outbox.url)
    app = create_app(config)
    with app.app_context():
        db.create_all()
        seed_lists()
        db.session.remove()
    Redis.from_url(redis_url).flushdb()
    yield config
    Redis.from_url(redis_url).flushdb()


@pytest.fixture
def environment(config, tmp_path) -> dict[str, str]:
    """The same settings for the subprocesses, with a multiprocess directory and JSON logs."""
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    env = {key: str(value) for key, value in config.items() if key != "TESTING"}
    env.update(
        MAIL_RETRY_INTERVALS="0,0",
        EMBED_ORIGINS="",
        RATE_LIMITS="off",
        LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        INSTANCE_PATH=str(tmp_path / "instance"),
    )
    return {**os.environ, **env}


@pytest.fixture
def gunicorn(environment, tmp_path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as sink:
        # The production settings (service/gunicorn_conf.py), two processes.
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:service.gunicorn_conf"],
            cwd=PROJECT, stdout=sink, stderr=subprocess.STDOUT,
            env={**environment, "WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _request(f"{base}/healthz")[0] == 200, "gunicorn to answer /healthz",
            timeout=START_TIMEOUT, interval=0.2, ignore=(OSError,),
            abort=lambda: exited(process), details=log.read_text,
        )  # fmt: skip
        yield base, log
    finally:
        process.terminate()
        process.wait(30)


# systemd's socket activation (deploy/systemd/zpravodaj-web.socket), as systemd does it:
# the listening socket as descriptor 3, LISTEN_FDS=1, and LISTEN_PID naming the process
# that runs gunicorn (sd_listen_fds checks it), which exec keeps.
SOCKET_ACTIVATED = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
gunicorn = ["-m", "gunicorn", "--config", "python:service.gunicorn_conf"]
os.execv(sys.executable, [sys.executable, *gunicorn])
"""


def test_a_restart_on_systemds_socket_refuses_no_connection(environment, tmp_path):
    """An upgrade restarts the web (a reload would mix the releases: deploy/systemd): a
    connection made while no gunicorn runs waits in systemd's socket and is answered by
    the next one. Under systemd the socket's address is the web's, not WEB_BIND."""
    unused = free_port()
    env = {**environment, "WEB_BIND": f"127.0.0.1:{unused}", "WEB_CONCURRENCY": "1"}
    log = tmp_path / "gunicorn.log"
    with socket.create_server(("127.0.0.1", 0)) as listener, log.open("wb") as sink:
        port = listener.getsockname()[1]

        def start() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-c", SOCKET_ACTIVATED, str(listener.fileno())],
                pass_fds=(listener.fileno(),), cwd=PROJECT, env=env, stdout=sink,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

        first = start()
        try:
            wait_until(
                lambda: _request(f"http://127.0.0.1:{port}/healthz")[0] == 200,
                "gunicorn to answer /healthz on the inherited socket", timeout=START_TIMEOUT,
                abort=lambda: exited(first), details=log.read_text,
            )  # fmt: skip
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", unused), timeout=10).close()
        finally:
            first.terminate()
            assert first.wait(30) == 0, log.read_text()
        # Nothing serves the socket now: the kernel queues the connection and its request.
        with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as waiting:
            waiting.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            second = start()
            try:
                answer = b"".join(iter(lambda: waiting.recv(65536), b""))
            finally:
                second.terminate()
                second.wait(30)
    assert answer.startswith(b"HTTP/1.1 200"), (answer[:200], log.read_text())


def _samples(base: str, **headers: str) -> dict[tuple[str, tuple], float]:
    status, _, text = _request(f"{base}/metrics", headers=headers)
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_gunicorn_and_a_forking_worker_report_through_one_scrape(gunicorn, environment, outbox):
    base, log = gunicorn
    request_ids = []
    for n in range(6):
        status, headers, _ = _request(
            f"{base}/subscribe", f"email=ctenar{n}%40example.cz&list=zpravodaj".encode()
        )
        assert status == 202
        request_ids.append(headers["X-Request-ID"])

    worker = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst"],
        cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert len(outbox.mails) == 6

    samples = _samples(base)
    assert samples[("zpravodaj_signups_total", (("channel", "page"),))] == 6
    sent = (("kind", "confirmation"), ("result", "sent"))
    assert samples[("zpravodaj_mails_total", sent)] == 6  # counted in the work horses
    assert samples[("zpravodaj_jobs_total", (("job", "send_outgoing"), ("result", "ok")))] == 6
    assert samples[("zpravodaj_smtp_send_seconds_count", ())] == 6

    # The work horses of a worker share one set of files: a few per process, not per job.
    files = sorted(path.name for path in Path(environment["PROMETHEUS_MULTIPROC_DIR"]).iterdir())
    identities = {name.rsplit("_", 1)[1].removesuffix(".db") for name in files}
    assert any(identity.endswith("-horse") for identity in identities), files
    assert len(identities) <= 4, files  # two gunicorn processes, the worker, its horses

    # The worker's lines are JSON too, each line of a job naming it.
    worker_lines = [json.loads(line) for line in worker.stderr.splitlines() if line.strip()]
    sent_lines = [line for line in worker_lines if line["message"].endswith(" sent")]
    assert len(sent_lines) == 6
    assert all(line["job_id"].startswith("outgoing-mail-") for line in sent_lines)

    # Under gunicorn the service's INFO lines are not lost, each is written once, and
    # they name their request; gunicorn's own lines are JSON too.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "service.access"]
    signups = [line for line in access if line["message"].startswith("POST /subscribe 202")]
    assert sorted(line["request_id"] for line in signups) == sorted(request_ids)
    assert all(line["level"] == "INFO" for line in access)
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    # Only the app's line per request: gunicorn's access line would give the path, which
    # for a personal link carries its token (it wrote one, despite `accesslog = None`).
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    assert "/subscribe" not in "".join(line["message"] for line in lines if line not in access)


def test_a_worker_host_serves_its_metrics_on_its_own_port(config, environment, outbox):
    """`zpravodaj worker --metrics-port`, for a host without the web app; token required."""
    port = free_port()
    env = {**environment, "METRICS_TOKEN": "worker-token"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "service", "worker", "--metrics-port", str(port)],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        app = create_app(config)
        with app.app_context():
            response = app.test_client().post(
                "/subscribe", data={"email": "jana@example.cz", "list": "zpravodaj"}
            )
            assert response.status_code == 202
            db.session.remove()
        wait_until(
            lambda: outbox.mails, "the confirmation mail", timeout=START_TIMEOUT,
            abort=lambda: exited(worker),
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        assert _request(f"{base}/metrics")[0] == 401
        samples = _samples(base, Authorization="Bearer worker-token")
        sent = (("kind", "confirmation"), ("result", "sent"))
        assert samples[("zpravodaj_mails_total", sent)] == 1
        # The database's facts are the web app's to report, not every worker host's.
        assert not any(name.startswith("zpravodaj_queue_") for name, _ in samples)
    finally:
        worker.terminate()
        worker.wait(30)


@pytest.mark.parametrize("command", [["worker", "--burst"], ["bounces", "serve"]])
def test_metrics_port_without_a_multiprocess_directory_is_refused(environment, command):
    # METRICS_PORT as a container sets it (compose.yaml); the same as --metrics-port.
    env = {k: v for k, v in environment.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(METRICS_PORT=str(free_port()), BOUNCE_SMTP_PORT=str(free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "service", *command],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "metrics: --metrics-port needs PROMETHEUS_MULTIPROC_DIR" in result.stderr
    assert "Traceback" not in result.stderr
