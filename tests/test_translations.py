"""The gettext catalogues: every message of the source translated, compiled as the build does.

Czech is the source (the msgids); English must translate every one of them,
and Czech must give all three plural forms of every plural message. The
messages are extracted afresh from the code and templates with the README's
`pybabel extract` command, so a string marked for translation but missing from
the catalogue fails here, not in front of a reader.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from service import PROJECT_ROOT
from service.i18n import TRANSLATIONS_DIR, compile_catalogues

# The README's extraction command ("Translations"), run from the checkout.
EXTRACT = [
    "extract",
    "-F",
    "babel.cfg",
    "-k",
    "_l",
    "--ignore-dirs=.* instance build",
    "--no-location",
    "--sort-output",
    "--project",
    "zpravodaj",
]


@pytest.fixture(scope="module")
def source_messages(tmp_path_factory) -> dict:
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run(
        [str(pybabel), *EXTRACT, "-o", str(pot), "."],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    with pot.open("rb") as handle:
        catalog = read_po(handle)
    # Keyed by msgid, and by (msgid, context) for pgettext's messages with a context.
    return {
        (message.id, message.context) if message.context else message.id: message
        for message in catalog
        if message.id
    }


def catalogue(language: str):
    with (TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=language)


def test_the_source_has_messages_to_translate(source_messages):
    assert "Neplatný e-mail." in source_messages
    assert "Přihlásit k odběru" in source_messages
    assert len(source_messages) > 100


def test_every_message_has_an_english_translation(source_messages):
    english = catalogue("en")
    missing, fuzzy = [], []
    for msgid, message in source_messages.items():  # pgettext's messages have a context
        entry = english.get(message.id, context=message.context)
        forms = (
            []
            if entry is None
            else (list(entry.string) if isinstance(entry.string, tuple) else [entry.string])
        )
        if entry is None or not all(forms):
            missing.append(msgid)
        elif entry.fuzzy:
            fuzzy.append(msgid)
    assert not missing, f"untranslated into English (run the README's pybabel update): {missing}"
    assert not fuzzy, f"fuzzy English translations (check and clear the flag): {fuzzy}"


def test_every_plural_message_has_the_three_czech_forms(source_messages):
    czech = catalogue("cs")
    assert czech.num_plurals == 3
    entries = {
        msgid: czech.get(message.id, context=message.context)
        for msgid, message in source_messages.items()
        if isinstance(message.id, tuple)  # a plural
    }
    incomplete = [
        msgid
        for msgid, entry in entries.items()
        if entry is None or len(entry.string) != 3 or not all(entry.string)
    ]
    assert not incomplete, f"Czech plural forms missing (1, 2–4, 5+): {incomplete}"


def test_catalogues_compile_and_translate(tmp_path):
    for language in ("cs", "en"):
        source = TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"
        target = tmp_path / language / "LC_MESSAGES"
        target.mkdir(parents=True)
        (target / "messages.po").write_bytes(source.read_bytes())
    written = compile_catalogues(tmp_path)
    assert len(written) == 2
    with (tmp_path / "en" / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
        english = read_mo(handle)
    assert english.get("Neplatný e-mail.").string == "Invalid e-mail address."
    # Up to date: nothing is written again.
    assert compile_catalogues(tmp_path) == []
