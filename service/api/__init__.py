"""The editors' JSON API under /api/v1 (DESIGN.md §5.5), with bearer tokens."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import routes  # noqa: E402,F401
