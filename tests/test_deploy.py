"""The deployment files: systemd units, compose.yaml, Dockerfile and gunicorn's settings.

No container engine and no systemd as PID 1 run here, so the files are checked
for what can be checked without them: `systemd-analyze verify` on the units,
the hardening every unit must carry, and that every file runs the very
commands the wheel test (tests/test_wheel.py) runs against an installed wheel.
"""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import missing_part

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
BIN = "/opt/zpravodaj/bin/"

# The one list of the parts' commands: the wheel test runs these, and every
# deployment file must run exactly these (where they listen comes from the
# environment: WEB_BIND, BOUNCE_SMTP_HOST/PORT).
COMMANDS = {
    "migrate": ["zpravodaj", "db", "upgrade"],
    "web": ["gunicorn", "--config", "python:service.gunicorn_conf"],
    "worker": ["zpravodaj", "worker"],
    "bounces": ["zpravodaj", "bounces", "serve"],
}
# The worker's Python runs optimised (-OO, service/bytecode.py): the unit and compose.yaml
# set this, and the wheel and container tests run their workers with it.
WORKER_PYTHON = {"PYTHONOPTIMIZE": "2"}
UNIT_OF = {
    "migrate": "zpravodaj-migrate.service",
    "web": "zpravodaj-web.service",
    "worker": "zpravodaj-worker@.service",
    "bounces": "zpravodaj-bounces.service",
}
HARDENING = {
    "User": "zpravodaj",
    "Group": "zpravodaj",
    "EnvironmentFile": "/etc/zpravodaj/zpravodaj.env",
    "StateDirectory": "zpravodaj",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
}


METRICS_DIR = "/run/zpravodaj-metrics"
METRICS_DIR_UNIT = "zpravodaj-metrics-dir.service"
WEB_SOCKET = "zpravodaj-web.socket"
COMMON_BLOCK = "# --- the same in every Zpravodaj unit"
ENTRYPOINT = ROOT / "deploy" / "container-entrypoint.sh"


def unit_settings(name: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (a key may repeat, e.g. Environment)."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        missing_part("systemd-analyze is not installed (Debian's systemd package)")
    # verify also checks that each ExecStart program exists: point the units at
    # this virtual environment's, which has the same console scripts as the wheel's.
    venv_bin = str(Path(sys.executable).parent) + "/"
    for unit in UNITS.glob("*"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(BIN, venv_bin))
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Unknown keys and bad values are only warnings (exit 0): any output is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("part", sorted(UNIT_OF))
def test_each_unit_runs_the_wheel_tests_command_hardened(part):
    settings = unit_settings(UNIT_OF[part])
    [command] = settings["ExecStart"]
    assert command.split() == [BIN + COMMANDS[part][0], *COMMANDS[part][1:]]
    for key, value in HARDENING.items():
        assert settings.get(key) == [value], f"{UNIT_OF[part]}: {key}"
    expected_restart = "on-failure" if part == "migrate" else "always"
    assert settings["Restart"] == [expected_restart]
    assert "INSTANCE_PATH=/var/lib/zpravodaj" in settings["Environment"]


def test_every_unit_carries_the_same_user_settings_and_hardening():
    blocks = {unit.name: unit.read_text().partition(COMMON_BLOCK) for unit in UNITS.glob("*")}
    blocks.pop(WEB_SOCKET)  # not a process: no user, no hardening
    assert set(blocks) == {*UNIT_OF.values(), METRICS_DIR_UNIT}
    assert all(block[1] for block in blocks.values()), "a unit without the common block"
    assert len({block[2] for block in blocks.values()}) == 1, "the common blocks differ"
    for key, value in HARDENING.items():
        assert unit_settings(METRICS_DIR_UNIT).get(key) == [value], key


@pytest.mark.parametrize("part", ["web", "worker", "bounces"])
def test_the_counting_parts_share_the_hosts_metrics_directory(part):
    settings = unit_settings(UNIT_OF[part])
    assert f"PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}" in settings["Environment"]
    assert settings["ReadWritePaths"] == [METRICS_DIR]  # ProtectSystem=strict: /run is read-only
    assert METRICS_DIR_UNIT in settings["Requires"][0].split()
    assert METRICS_DIR_UNIT in settings["After"][0].split()
    # A RuntimeDirectory of its own would be removed when this unit stops, the
    # other units' files with it.
    assert "RuntimeDirectory" not in settings


def test_the_metrics_directory_is_new_and_empty_whenever_no_part_runs(tmp_path):
    settings = unit_settings(METRICS_DIR_UNIT)
    assert (settings["Type"], settings["RemainAfterExit"]) == (["oneshot"], ["yes"])
    # Stopped, and its directory removed, once no unit that requires it is running.
    assert settings["StopWhenUnneeded"] == ["yes"]
    assert settings["RuntimeDirectory"] == [METRICS_DIR.removeprefix("/run/")]
    assert "RuntimeDirectoryPreserve" not in settings
    # Its ExecStart empties one that was left over: run here on a stand-in.
    directory = tmp_path / "zpravodaj-metrics"
    (directory / "old").mkdir(parents=True)
    for name in ("counter_812.db", "histogram_900-horse.db", "old/x"):
        (directory / name).write_bytes(b"counts of processes that ran before")
    [command] = settings["ExecStart"]
    subprocess.run(command.replace(METRICS_DIR, str(directory)).split(), check=True, timeout=60)
    assert directory.is_dir() and not any(directory.iterdir())


def test_the_worker_unit_runs_optimised_with_its_bytecode_compiled_first():
    settings = unit_settings(UNIT_OF["worker"])
    cache = "/var/cache/zpravodaj/bytecode"
    [environment] = [line for line in settings["Environment"] if "PYTHONOPTIMIZE" in line]
    assert dict(pair.split("=") for pair in environment.split()) == {
        **WORKER_PYTHON, "PYTHONPYCACHEPREFIX": cache,
    }  # fmt: skip
    # ProtectSystem=strict: the cache directory is the unit's own, writable one.
    assert settings["CacheDirectory"] == ["zpravodaj"]
    # Before each start; a failure ("-") only costs memory, the worker starts all the same.
    # One instance compiles at a time; -P: the working directory is not on the module path.
    assert settings["ExecStartPre"] == [
        f"-/usr/bin/flock {cache}.lock {BIN}python -P -m service.bytecode"
    ]
    for part in ("web", "bounces", "migrate"):
        assert "PYTHONOPTIMIZE" not in " ".join(unit_settings(UNIT_OF[part]).get("Environment", []))


def test_the_worker_container_runs_optimised_on_the_images_bytecode():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert WORKER_PYTHON.items() <= services["worker"]["environment"].items()
    assert "PYTHONOPTIMIZE" not in services["web"]["environment"]
    # The image compiles it while it can still write (before USER), after the wheel.
    dockerfile = (ROOT / "Dockerfile").read_text()
    compiled = dockerfile.index("/opt/zpravodaj/bin/python -OO -P -m service.bytecode")
    assert dockerfile.index("--no-deps /tmp/dist/*.whl") < compiled < dockerfile.index("USER ")


def test_the_web_listens_on_systemds_socket_and_is_restarted_not_reloaded(monkeypatch):
    """An upgrade restarts the web: a reload (gunicorn's HUP) would fork the new processes
    from a master holding the old release's package and Flask. systemd keeps the socket,
    so connections wait through the restart (tests/operations/test_gunicorn.py)."""
    web = unit_settings(UNIT_OF["web"])
    assert WEB_SOCKET in web["Requires"][0].split() and WEB_SOCKET in web["After"][0].split()
    assert "ExecReload" not in web
    socket = unit_settings(WEB_SOCKET)
    default = gunicorn_settings(monkeypatch)["bind"]
    assert socket["ListenStream"] == default == ["127.0.0.1:8000"]  # WEB_BIND's default
    assert socket["WantedBy"] == ["sockets.target"]


def test_the_web_and_the_workers_start_after_the_migrations():
    web = unit_settings(UNIT_OF["web"])
    assert "zpravodaj-migrate.service" in web["Requires"][0].split()
    assert "zpravodaj-migrate.service" in web["After"][0].split()
    for part in ("worker", "bounces"):
        assert "zpravodaj-migrate.service" in unit_settings(UNIT_OF[part])["After"][0].split()
    assert unit_settings(UNIT_OF["migrate"])["Type"] == ["oneshot"]


def test_compose_runs_the_wheel_tests_commands():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for part, command in COMMANDS.items():
        assert services[part]["command"] == command, part
    assert {"postgres", "redis", "mailcatcher"} <= set(services)
    assert services["web"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_the_image_is_multi_stage_non_root_and_installs_the_locks():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert re.search(r"^USER zpravodaj$", dockerfile, re.M)
    assert "--require-hashes -r requirements/build.txt" in dockerfile
    assert "--require-hashes -r /tmp/runtime.txt" in dockerfile
    assert "--no-deps /tmp/dist/*.whl" in dockerfile
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert yaml.safe_load(cmd) == COMMANDS["web"]
    # Every part starts through the entrypoint, which empties the metrics directory.
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1)
    assert yaml.safe_load(entrypoint) == ["zpravodaj-entrypoint"]
    assert "COPY deploy/container-entrypoint.sh /usr/local/bin/zpravodaj-entrypoint" in dockerfile
    assert f"PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}" in dockerfile


def run_entrypoint(directory: Path | None, *command: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return subprocess.run(
        [str(ENTRYPOINT), *command], env=env, capture_output=True, text=True, timeout=60
    )


LIST_IT = "import os, sys; print(sorted(os.listdir(sys.argv[1]))); sys.exit(3)"


def test_the_container_entrypoint_empties_the_metrics_directory_then_runs_the_command(tmp_path):
    directory = tmp_path / "zpravodaj-metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"counts of the container's previous run")
    result = run_entrypoint(directory, sys.executable, "-c", LIST_IT, str(directory))
    # The command itself runs (exec: its exit status is the container's), in an empty directory.
    assert (result.returncode, result.stdout, result.stderr) == (3, "[]\n", "")
    # Made when missing (a volume mounted over it, an image built without it).
    directory.rmdir()
    assert run_entrypoint(directory, sys.executable, "-c", LIST_IT, str(directory)).stdout == "[]\n"
    # Without the variable it only runs the command.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_bytes(b"")
    assert run_entrypoint(None, sys.executable, "-c", LIST_IT, str(kept)).stdout == "['file']\n"


def test_compose_gives_worker_and_bounce_containers_a_metrics_port():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for part in ("worker", "bounces"):
        environment = services[part]["environment"]
        assert (environment["METRICS_PORT"], environment["METRICS_HOST"]) == ("9101", "0.0.0.0")
    # The web's /metrics is its own: a port there would only clash.
    assert "METRICS_PORT" not in services["web"]["environment"]


# --- gunicorn's settings ------------------------------------------------------------


def gunicorn_settings(monkeypatch, **environ: str) -> dict:
    for name in ("WEB_BIND", "WEB_CONCURRENCY", "WEB_THREADS", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "service" / "gunicorn_conf.py"), run_name="service.x")


def test_gunicorn_defaults_listen_on_loopback_with_processes_from_the_cores(monkeypatch):
    import os

    settings = gunicorn_settings(monkeypatch)
    assert settings["bind"] == ["127.0.0.1:8000"]
    assert settings["workers"] == 2 * (os.cpu_count() or 1) + 1
    assert settings["wsgi_app"] == "service:create_app()"
    settings = gunicorn_settings(monkeypatch, WEB_BIND="0.0.0.0:8080", WEB_CONCURRENCY="3")
    assert (settings["bind"], settings["workers"]) == (["0.0.0.0:8080"], 3)


def request_from(peer: tuple[str, int], headers: list[tuple[str, str]]) -> SimpleNamespace:
    """What gunicorn hands pre_request: its parsed request (names in upper case)."""
    return SimpleNamespace(peer_addr=peer, headers=[(n.upper(), v) for n, v in headers])


HEADERS = [
    ("Host", "zpravodaj.example"),
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "for=203.0.113.9"),
    ("X-Real-IP", "203.0.113.9"),
]


def test_forwarded_headers_count_only_from_a_configured_proxy(monkeypatch):
    settings = gunicorn_settings(monkeypatch, FORWARDED_ALLOW_IPS="10.0.0.5")
    from_proxy = request_from(("10.0.0.5", 40000), HEADERS)
    settings["pre_request"](None, from_proxy)
    assert len(from_proxy.headers) == len(HEADERS)

    from_elsewhere = request_from(("198.51.100.7", 40000), HEADERS)
    settings["pre_request"](None, from_elsewhere)
    assert from_elsewhere.headers == [("HOST", "zpravodaj.example")]
