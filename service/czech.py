"""Czech grammar the catalogues cannot carry: plural forms of the admin's older
templates, and the case of a working group's own name inside a sentence."""

from __future__ import annotations

import re

from .i18n import current_language

_GROUP_WORD = re.compile(r"\bskupina\b", re.IGNORECASE)
_GROUP_WORD_EN = re.compile(r"\bgroup\b", re.IGNORECASE)


def plural(count: int, one: str, few: str, many: str) -> str:
    """Pick the Czech plural form: 1 den, 2–4 dny, 0 and 5+ dní ("{n}" is replaced).

    New text uses `ngettext` (the `cs` catalogue holds the three forms); this
    stays for templates not yet moved to it.
    """
    if count == 1:
        form = one
    elif 2 <= count <= 4:
        form = few
    else:
        form = many
    return form.replace("{n}", str(count))


def group_genitive(name: str) -> str:
    """ "člen …", "do …": a group's name in the genitive, without saying "group" twice.

    "Pracovní skupina Brno" → "Pracovní skupiny Brno" (not "pracovní skupiny
    Pracovní skupina Brno"), "Odborná skupina Praha 14" → "Odborné skupiny Praha 14";
    a name without "skupina" is introduced: "pracovní skupiny Krizové bydlení", unless
    it is an English one that says "group" ("Working group Brno" stays as it is).
    """
    match = _GROUP_WORD.search(name)
    if match is None:
        return name if _GROUP_WORD_EN.search(name) else f"pracovní skupiny {name}"
    before = name[: match.start()].split(" ")
    # Adjectives before the noun agree with it: hard -á → -é, soft -í stays.
    before = [w[:-1] + "é" if w.endswith("á") else w for w in before]
    noun = "skupiny" if match.group().islower() else "Skupiny"
    return " ".join(before) + noun + name[match.end() :]


def names_a_group(name: str) -> bool:
    """Whether a group's name says it is a group already ("Pracovní skupina Brno", "Working
    group Brno"), so a page need not add "pracovní skupina" to it."""
    return _GROUP_WORD.search(name) is not None or _GROUP_WORD_EN.search(name) is not None


def group_in_sentence(name: str) -> str:
    """A group's name inside a sentence of the current language: declined in Czech
    (`group_genitive`), as it is in English."""
    return group_genitive(name) if current_language() == "cs" else name
