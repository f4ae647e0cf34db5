"""Czech language helpers for user-facing text."""

from __future__ import annotations


def plural(count: int, one: str, few: str, many: str) -> str:
    """Pick the Czech plural form: 1 den, 2–4 dny, 0 and 5+ dní ("{n}" is replaced)."""
    if count == 1:
        form = one
    elif 2 <= count <= 4:
        form = few
    else:
        form = many
    return form.replace("{n}", str(count))
