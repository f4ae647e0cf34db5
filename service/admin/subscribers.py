"""Subscribers: search, filter, one person's consent history, CSV import and export."""

from __future__ import annotations
