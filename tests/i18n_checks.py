"""Checks that a page or mail rendered in English carries no Czech left untranslated."""

from __future__ import annotations

import re

CZECH_LETTERS = re.compile(r"[áčďéěíňóřšťúůýžÁČĎÉĚÍŇÓŘŠŤÚŮÝŽ]")
# Data, not interface: names of lists and people, the programme's own name.
DATA = ("Zpravodaj sociálního bydlení", "Sociální bydlení v ČR", "Jana Nováková", "Čtenář")


def untranslated(text: str, *data: str) -> list[str]:
    """The lines of `text` that still hold Czech letters once known data is taken out."""
    for known in (*DATA, *data):
        text = text.replace(known, "")
    return [line.strip() for line in text.splitlines() if CZECH_LETTERS.search(line)]


def visible_text(html: str) -> str:
    """The text of an HTML page a reader sees (and its attributes' labels), tags dropped."""
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", html)
    # Content marked as not to be translated (a stored consent text, shown as people saw it).
    html = re.sub(r'(?is)<(\w+)\b[^>]*\btranslate="no"[^>]*>.*?</\1>', "", html)
    labels = " ".join(re.findall(r'(?:aria-label|title|alt|placeholder)="([^"]*)"', html))
    return re.sub(r"<[^>]+>", "\n", html) + "\n" + labels
