"""Public and members' pages of working groups."""

from __future__ import annotations
