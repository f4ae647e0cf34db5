"""The dev instance's settings in a file, for the other `zpravodaj` commands of the checkout.

While `zpravodaj dev` runs it keeps `dev.env` in the instance folder: the
settings it chose (its private Redis, its mail catcher, its secret key…) and
its own PID. Any other `zpravodaj` command started in that checkout loads
the file through Flask's python-dotenv support before it builds the app, so
`zpravodaj lists show` or `zpravodaj users create` in a second terminal work
against the running dev instance with nothing copied by hand. A variable
already in the environment wins, as with Flask's `.env`; a file left behind by
a dev command that was killed is ignored, since its PID no longer runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values
from flask.cli import load_dotenv

FILE_NAME = "dev.env"
PID_VARIABLE = "ZPRAVODAJ_DEV_PID"


def _quoted(value: str) -> str:
    """Single-quoted as python-dotenv reads it back: only \\ and ' are escaped there."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write(instance: Path, environ: Mapping[str, str], names: Iterable[str]) -> Path:
    """Write the named settings of `environ` and this process's PID; readable by the owner only."""
    path = instance / FILE_NAME
    lines = [
        "# Written by `zpravodaj dev` while it runs; removed when it stops.",
        f"{PID_VARIABLE}={os.getpid()}",
    ]
    lines += [f"{name}={_quoted(environ[name])}" for name in names if environ.get(name)]
    partial = path.with_name(FILE_NAME + ".partial")
    # It holds the dev SECRET_KEY: created 0600, then renamed into place whole.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    partial.replace(path)
    return path


def remove(instance: Path) -> None:
    """Remove the file when this process wrote it (a second dev command's file stays)."""
    path = instance / FILE_NAME
    if _writer(path) == os.getpid():
        path.unlink(missing_ok=True)


def load_if_running(instance: Path) -> bool:
    """Load the running dev instance's settings into os.environ (not overriding); True if loaded."""
    path = instance / FILE_NAME
    pid = _writer(path)
    if pid is None or not _running(pid):
        return False
    return load_dotenv(path, load_defaults=False)


def _writer(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        return int(dotenv_values(path, encoding="utf-8").get(PID_VARIABLE) or "")
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    return True
