"""The `api` blueprint, apart from its views so that each view module can import it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
