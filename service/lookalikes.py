"""Look-alike addresses in the admin: mixed-script domains shown as browsers show them.

`jan@pаypal.cz` with a Cyrillic "а" reads as PayPal's domain. Browsers answer
such names by showing their ASCII (punycode) form; the admin does the same,
with a warning badge, through one Jinja filter, `address`, used wherever an
address is shown.

The rule is UTS #39's "Highly Restrictive" restriction level, which
Chromium's IDN display policy also starts from: every label of the domain
must be written in one script (characters of the Common and Inherited
scripts, digits and hyphens, go with any), except the combinations that
East Asian writing needs, Latin with Han and Hiragana/Katakana, with Han and
Bopomofo, or with Han and Hangul. So `příklad.cz` (Latin with diacritics)
and `пример.рф` (all Cyrillic) stay Unicode; `pаypal.cz` does not.

The script of each character comes from `confusable_homoglyphs`, a small
maintained library that ships the Unicode Character Database's Scripts.txt
(the standard library's `unicodedata` has no script property). Not covered:
whole-script confusables (an all-Cyrillic `рауран.cz` that looks Latin);
Chromium checks those against a list of top domains, which needs data this
service does not keep (README, Security, residual risks).
"""

from __future__ import annotations

from dataclasses import dataclass

import idna
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

# Scripts that go with any other (digits, punctuation, combining marks).
_NEUTRAL = frozenset({"COMMON", "INHERITED", "UNKNOWN"})
# UTS #39 5.2 "Highly Restrictive": the mixes East Asian writing needs.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)

BADGE_TEXT = _l("pozor: doména míchá písma")
BADGE_TITLE = _l(
    "Doména kombinuje znaky různých písem (např. latinku a cyrilici), "
    "takže může napodobovat jinou, známou doménu. Zobrazena je v ASCII tvaru (punycode)."
)


def scripts_of(label: str) -> frozenset[str]:
    """The Unicode scripts of a label's characters, neutral ones left out."""
    # Imported on first use: its script table takes ~8 MB, and every process
    # (the workers too) loads this module with the app's Jinja filters, while
    # only admin pages showing a non-ASCII domain need it.
    from confusable_homoglyphs import categories

    return frozenset(categories.alias(char) for char in label) - _NEUTRAL


def is_mixed_script(label: str) -> bool:
    """Whether one domain label mixes scripts beyond what UTS #39 Highly Restrictive allows."""
    scripts = scripts_of(label)
    if len(scripts) <= 1:
        return False
    return not any(scripts <= allowed for allowed in _ALLOWED_MIXES)


def _ascii_label(label: str) -> str:
    """IDNA (UTS #46 mapped, as browsers do); bare punycode for what IDNA refuses."""
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        return "xn--" + label.lower().encode("punycode").decode("ascii")


@dataclass(frozen=True)
class DisplayedAddress:
    """How the admin shows an address: its text and whether it is suspicious."""

    text: str
    lookalike: bool


def displayed(email: str) -> DisplayedAddress:
    """The address as shown: a mixed-script domain in ASCII form, flagged."""
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return DisplayedAddress(email, False)
    labels = domain.split(".")
    if not any(is_mixed_script(label) for label in labels):
        return DisplayedAddress(email, False)
    # The whole domain in ASCII, as browsers do; labels already ASCII stay as they are.
    ascii_domain = ".".join(label if label.isascii() else _ascii_label(label) for label in labels)
    return DisplayedAddress(f"{local}@{ascii_domain}", True)


def as_shown(email: str) -> str:
    """The address as plain text for the admin (flash messages): look-alikes in ASCII."""
    return displayed(email).text


def address_filter(email: str | None, badge: bool = True) -> Markup | str:
    """Jinja filter `address`: the address for the admin, with a badge when it is a look-alike.

    `badge=False` gives plain text, for places that take no markup (a page
    title, an `<option>`).
    """
    if not email:
        return ""
    shown = displayed(email)
    if not badge:
        return shown.text
    if not shown.lookalike:
        return escape(shown.text)
    return Markup(
        '<span class="address address-lookalike">{}</span> '
        '<span class="badge badge-warning" title="{}">{}</span>'
    ).format(shown.text, str(BADGE_TITLE), str(BADGE_TEXT))
