"""Where the project's files are: the checkout and the instance folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def instance_path() -> Path:
    """INSTANCE_PATH, else `instance/` in the project: the database, keys, dev state."""
    return Path(os.environ.get("INSTANCE_PATH") or PROJECT_ROOT / "instance")
