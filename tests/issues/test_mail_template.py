"""The issue mail template's own CSS: what narrow screens get on top of the inlined styles."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "email" / "issue.html"


def test_narrow_screens_only_tighten_the_padding():
    """A slip once gave the masthead and the content the meeting box's border and
    background on phones; the media query must only adjust sizes and padding."""
    css = TEMPLATE.read_text(encoding="utf-8")
    media = re.search(r"@media \([^{]*\{(.*?)\n\}", css, re.S).group(1)
    for rule in re.findall(r"([^{}]+)\{([^}]*)\}", media):
        selector, declarations = (part.strip() for part in rule)
        properties = {d.split(":")[0].strip() for d in declarations.split(";") if d.strip()}
        assert properties <= {
            "padding",
            "padding-left",
            "padding-right",
            "width",
            "border-radius",
            "font-size",
        }, selector
