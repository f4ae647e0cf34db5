"""Issues: compose, preview, test-send, send or schedule, follow progress."""

from __future__ import annotations
