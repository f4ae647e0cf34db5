"""The `admin` blueprint, apart from its views so that each view module can import it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
