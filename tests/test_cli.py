"""The `zpravodaj` command itself: help and version without settings, the settings check.

Run as an operator would, as a subprocess with a bare environment: no
SECRET_KEY, REDIS_URL or SMTP_URL, nothing of the suite's configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import click
import pytest

import service
from service.cli import app_commands
from service.dev import env_file

ZPRAVODAJ = Path(sys.executable).with_name("zpravodaj")
REQUIRED = ("SECRET_KEY", "REDIS_URL", "SMTP_URL")
SOME_VALUES = {
    "SECRET_KEY": "tajný-klíč-na-zkoušku",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "SMTP_URL": "smtp://127.0.0.1:1",
}


def zpravodaj(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path)}
    return subprocess.run(
        [str(ZPRAVODAJ), *args], cwd=tmp_path, env={**env, **environ},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_help_lists_every_command_without_settings(tmp_path, app):
    result = zpravodaj(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    listed = result.stdout.split("Commands:", 1)[1]
    names = {line.split()[0] for line in listed.splitlines() if line.startswith("  ")}
    # Every command of the app (as create_app builds it), and those of the group itself.
    with app.test_request_context():
        expected = set(app.cli.list_commands(click.Context(app.cli)))
    assert expected | {"dev", "worker", "dkim", "db", "run", "shell", "routes"} <= names


def test_other_packages_commands_still_load_when_asked_for(tmp_path):
    """Flask's `flask.commands` plug-ins (Flask-Limiter's `limiter`) are no longer loaded for
    the group's own commands (a worker: test_process_footprint.py), but still found."""
    listed = zpravodaj(tmp_path, "--help", **SOME_VALUES)
    assert listed.returncode == 0, listed.stderr
    assert "  limiter " in listed.stdout
    result = zpravodaj(tmp_path, "limiter", "--help", **SOME_VALUES)
    assert result.returncode == 0, result.stderr
    assert "Flask-Limiter" in result.stdout


def test_help_without_an_app_lists_what_the_app_would(app):
    """cli.py's own list of the app's commands (for help without settings) cannot drift."""
    context = click.Context(app.cli)
    assert set(app_commands().list_commands(context)) == set(app.cli.list_commands(context))


def test_help_of_a_subcommand_works_without_settings(tmp_path):
    result = zpravodaj(tmp_path, "subscribers", "import", "--help")
    assert result.returncode == 0, result.stderr
    assert "--consent-source" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_command_that_needs_a_setting_names_the_missing_one_in_one_line(tmp_path, missing):
    given = {name: value for name, value in SOME_VALUES.items() if name != missing}
    result = zpravodaj(tmp_path, "lists", "show", **given)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: Chybí nastavení {missing}: zadejte je v prostředí (viz README.md, "
        "Configuration), nebo lokálně spusťte `zpravodaj dev`."
    )
    assert result.stdout == ""


def test_commands_that_need_no_app_run_without_settings(tmp_path):
    result = zpravodaj(tmp_path, "dkim", "keygen", "--selector", "s1", "--domain", "obec.example")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dkim-s1.pem").exists()


def test_version_is_the_installed_distributions(tmp_path):
    result = zpravodaj(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"zpravodaj {version('zpravodaj')}\n"
    assert service.__version__ == version("zpravodaj")


# --- the dev instance's env file (the end-to-end test is in test_dev_command.py) ------


@pytest.fixture
def clean_environ(monkeypatch):
    """The variables the tests load are removed again afterwards, whatever they set."""
    for name in ("SECRET_KEY", "MAIL_FROM", env_file.PID_VARIABLE):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_dev_env_file_round_trips_awkward_values(tmp_path, clean_environ):
    value = 'Zpravodaj "sociálního" bydlení <z@obec.example> it\'s a \\ backslash #'
    env_file.write(tmp_path, {"MAIL_FROM": value, "SECRET_KEY": "k"}, ["MAIL_FROM", "SECRET_KEY"])
    assert env_file.load_if_running(tmp_path)
    assert os.environ["MAIL_FROM"] == value
    assert os.environ["SECRET_KEY"] == "k"


def test_the_environment_wins_over_the_dev_env_file(tmp_path, clean_environ, monkeypatch):
    env_file.write(tmp_path, {"SECRET_KEY": "z-dev"}, ["SECRET_KEY"])
    monkeypatch.setenv("SECRET_KEY", "vlastní")
    env_file.load_if_running(tmp_path)
    assert os.environ["SECRET_KEY"] == "vlastní"


def test_a_dev_env_file_left_by_a_dead_dev_command_is_ignored(tmp_path, clean_environ):
    env_file.write(tmp_path, {"SECRET_KEY": "z-mrtvého"}, ["SECRET_KEY"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    path = tmp_path / env_file.FILE_NAME
    path.write_text(path.read_text().replace(f"={os.getpid()}\n", f"={finished.stdout.strip()}\n"))
    assert not env_file.load_if_running(tmp_path)
    assert "SECRET_KEY" not in os.environ
    env_file.remove(tmp_path)  # not this process's file: it stays
    assert path.exists()


# --- progress bars: on a terminal only ----------------------------------------------


def _read_until_closed(descriptor: int, deadline: float) -> bytes:
    """All a process writes to a pty, until it closes its end; fails at the deadline."""
    import select

    shown = b""
    while True:
        ready, _, _ = select.select([descriptor], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"the command still had its terminal open at the deadline: {shown!r}")
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # EIO: the process closed its end
            return shown
        if not chunk:
            return shown
        shown += chunk


def _export_with_stderr_on(app, tmp_path, terminal: bool) -> tuple[str, str]:
    """`zpravodaj subscribers export` with stdout to a pipe and stderr to a pty or a pipe."""
    import pty

    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path),
        **{name: app.config[name] for name in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")},
        "SECRET_KEY": app.config["SECRET_KEY"],
    }  # fmt: skip
    command = [str(ZPRAVODAJ), "subscribers", "export", "--list", "zpravodaj"]
    if not terminal:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout, result.stderr
    controller, terminal_end = pty.openpty()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=terminal_end, stdin=subprocess.DEVNULL
    )
    os.close(terminal_end)
    try:
        shown = _read_until_closed(controller, deadline=time.monotonic() + 120)
        stdout = process.stdout.read().decode()
        assert process.wait(120) == 0, shown
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()
        os.close(controller)
    return stdout, shown.decode(errors="replace")


def test_export_shows_a_progress_bar_on_a_terminal_and_nothing_in_a_script(app, tmp_path):
    from tests.conftest import add_confirmed_subscribers

    add_confirmed_subscribers("zpravodaj", 30)
    csv_text, shown = _export_with_stderr_on(app, tmp_path, terminal=True)
    assert len(csv_text.splitlines()) == 31  # the CSV is untouched by the bar
    assert "Export" in shown and "100%" in shown

    csv_text, shown = _export_with_stderr_on(app, tmp_path, terminal=False)
    assert len(csv_text.splitlines()) == 31
    assert shown == ""
