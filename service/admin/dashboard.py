"""Dashboard: subscribers per list and status, and sign-ups per week."""

from __future__ import annotations
