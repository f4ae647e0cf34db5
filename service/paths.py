"""Where the project's files are: templates, static files, migrations, the instance folder.

Installed from the wheel, `templates/`, `static/` and `migrations/` are package
data inside `service/` (pyproject.toml maps them there); in a checkout they
stay at the top level beside the package, where the project's layout wants
them. Everything finds them through `resource_dir`, never by a path of its own.
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path

PACKAGE_ROOT = Path(str(files(__package__)))
# The checkout when running from one; in an installed wheel, site-packages.
PROJECT_ROOT = PACKAGE_ROOT.parent
RESOURCES = ("templates", "static", "migrations")


def installed() -> bool:
    """True when the package runs from a wheel (its data inside it), not from a checkout."""
    return (PACKAGE_ROOT / "templates").is_dir()


def resource_dir(name: str) -> Path:
    """The folder `templates`, `static` or `migrations`, wherever this installation keeps it."""
    if name not in RESOURCES:
        raise ValueError(f"not a resource folder of the package: {name!r}")
    folder = (PACKAGE_ROOT if installed() else PROJECT_ROOT) / name
    if not folder.is_dir():
        # A wheel built without its package data; say so rather than 500 on every page.
        raise FileNotFoundError(f"{folder} is missing: the installation is incomplete")
    return folder


def instance_path() -> Path:
    """INSTANCE_PATH, else a default: the database, keys and dev state live there.

    In a checkout the default is `instance/` in it; an installed wheel uses
    Flask's own default for installed packages, `<venv>/var/zpravodaj-instance`
    (the systemd units and the container image set INSTANCE_PATH instead).
    """
    configured = os.environ.get("INSTANCE_PATH")
    if configured:
        return Path(configured)
    if installed():
        return Path(sys.prefix) / "var" / "zpravodaj-instance"
    return PROJECT_ROOT / "instance"
