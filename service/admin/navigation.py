"""The admin's navigation, by role: coordinators see only what concerns their groups."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from ..accounts import signed_in_user

# (endpoint, label, roles that see it)
NAVIGATION = (
    ("admin.dashboard", "Přehled", ("admin", "editor", "coordinator")),
    ("admin.subscribers", "Odběratelé", ("admin", "editor")),
    ("admin.issues", "Vydání", ("admin", "editor", "coordinator")),
    ("admin.groups", "Skupiny", ("admin", "coordinator")),
    ("admin.users", "Účty", ("admin",)),
)


def init_app(app: Flask) -> None:
    @app.context_processor
    def _navigation() -> dict[str, Callable[[], list[tuple[str, str]]]]:
        def admin_navigation() -> list[tuple[str, str]]:
            user = signed_in_user()
            if user is None:
                return []
            return [(e, label) for e, label, roles in NAVIGATION if user.role in roles]

        return {"admin_navigation": admin_navigation}
