"""The admin blueprint with all its views: importing each view module registers its routes."""

from __future__ import annotations

from . import auth, dashboard, groups, issues, meetings, subscribers, users  # noqa: F401
from .blueprint import bp

__all__ = ["bp"]
