"""Hatchling build hook: compile the gettext catalogues into the wheel.

The `.po` files under service/translations are the source (in git); the `.mo`
files Flask-Babel reads are built here, for every wheel, so an installation
never depends on a compiled file someone forgot to commit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileCatalogues(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._compiled: Path | None = None
        if version == "editable":
            # A checkout's catalogues are compiled in place (service/i18n.py).
            return
        self._compiled = Path(tempfile.mkdtemp(prefix="zpravodaj-mo-"))
        root = Path(self.root) / "service" / "translations"
        for po_path in sorted(root.glob("*/LC_MESSAGES/messages.po")):
            language = po_path.parent.parent.name
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=language)
            mo_path = self._compiled / language / "messages.mo"
            mo_path.parent.mkdir(parents=True)
            with mo_path.open("wb") as mo_file:
                write_mo(mo_file, catalog, use_fuzzy=False)
            target = f"service/translations/{language}/LC_MESSAGES/messages.mo"
            build_data["force_include"][str(mo_path)] = target

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._compiled is None:
            return
        for mo_path in self._compiled.glob("*/messages.mo"):
            os.unlink(mo_path)
            os.rmdir(mo_path.parent)
        os.rmdir(self._compiled)
