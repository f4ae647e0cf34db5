"""The admin's navigation, by role: coordinators see only what concerns their groups."""

from __future__ import annotations

from flask import Flask
from flask_login import current_user

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
    def _navigation():
        def admin_navigation() -> list[tuple[str, str]]:
            if not current_user.is_authenticated:
                return []
            return [(e, label) for e, label, roles in NAVIGATION if current_user.role in roles]

        return {"admin_navigation": admin_navigation}
