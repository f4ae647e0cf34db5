"""Schema migrations: Flask-Migrate (Alembic), bound only where something migrates.

The web app and the workers never migrate, so `create_app` leaves this out:
Alembic and Flask-Migrate cost every gunicorn and RQ process ~11 MB and their
import time (issue 14). `zpravodaj db …` (cli.py), `zpravodaj dev` and the
migration tests bind it with `init_migrations`.
"""

from __future__ import annotations

import copy
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import Migrate
from flask_migrate import upgrade as upgrade_to_head
from flask_migrate.cli import db as migrate_commands  # type: ignore[import-not-found]  # no .cli stub

from .extensions import db
from .paths import resource_dir

__all__ = ["init_migrations", "migrate_commands", "upgrade_to_head"]


def init_migrations(app: Flask) -> None:
    """Give `app` Flask-Migrate (and its `db` commands); harmless to repeat."""
    if "migrate" not in app.extensions:
        Migrate(app, db, directory=str(resource_dir("migrations")), render_as_batch=True)


def commands() -> click.Group:
    """Flask-Migrate's `db` group (upgrade, downgrade, migrate, current, …), which binds
    Flask-Migrate to the app before any of its commands runs."""
    group = copy.copy(migrate_commands)
    options = migrate_commands.callback

    @with_appcontext
    def bind_then_read_options(**kwargs: Any) -> Any:
        # Flask's type hints describe current_app as the app, not its proxy.
        init_migrations(current_app._get_current_object())  # type: ignore[attr-defined]
        return options(**kwargs)

    group.callback = bind_then_read_options
    return group
