"""The admin's navigation, by role: coordinators see only what concerns their groups."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask_babel import lazy_gettext as _l

from ..accounts import signed_in_user

# (endpoint, label, roles that see it)
NAVIGATION = (
    ("admin.dashboard", _l("Přehled"), ("admin", "editor", "coordinator")),
    ("admin.subscribers", _l("Odběratelé"), ("admin", "editor")),
    ("admin.issues", _l("Vydání"), ("admin", "editor", "coordinator")),
    ("admin.groups", _l("Skupiny"), ("admin", "coordinator")),
    ("admin.users", _l("Účty"), ("admin",)),
)


def init_app(app: Flask) -> None:
    @app.context_processor
    def _navigation() -> dict[str, Callable[[], list[tuple[str, str]]]]:
        def admin_navigation() -> list[tuple[str, str]]:
            user = signed_in_user()
            if user is None:
                return []
            return [(e, str(label)) for e, label, roles in NAVIGATION if user.role in roles]

        return {"admin_navigation": admin_navigation}
