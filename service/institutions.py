"""The institution types of working-group members as the reader's language names them.

`INSTITUTION_TYPES` in models.py holds the keys and the Czech labels (the
source of truth, which CSV imports also match); the same labels are marked
here for translation, so the join form and the preferences page can offer
them in English too.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from .models import INSTITUTION_TYPES

INSTITUTION_LABELS = {
    "obec-socialni": _l("obecní úřad – sociální odbor"),
    "obec-bytovy": _l("obecní úřad – bytový/majetkový odbor"),
    "ospod": _l("OSPOD"),
    "urad-prace": _l("Úřad práce"),
    "nno": _l("nezisková organizace"),
    "poskytovatel": _l("poskytovatel sociálních služeb"),
    "zdravotnictvi": _l("zdravotnické zařízení"),
    "pronajimatel": _l("soukromý pronajímatel"),
    "domovnik": _l("domovník"),
    "apk": _l("asistent prevence kriminality"),
    "skola": _l("škola"),
    "verejnost": _l("veřejnost"),
    "politika": _l("politická reprezentace"),
    "spolek": _l("spolek občanů"),
    "zastupce": _l("zástupce lidí v bytové nouzi"),
    "jine": _l("jiné"),
}


def institution_labels() -> dict[str, str]:
    """Key → label in the current language, in INSTITUTION_TYPES' order."""
    return {
        key: str(INSTITUTION_LABELS.get(key, label)) for key, label in INSTITUTION_TYPES.items()
    }
