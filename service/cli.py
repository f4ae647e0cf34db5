"""The `zpravodaj` command line (DESIGN.md §5.3): a Flask CLI group for the app.

The app's own commands are in commands.py; here are the entry point and the
commands that run before (or without) an app: `dev` and `dkim keygen`.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click
from flask import Flask
from flask.cli import FlaskGroup

from . import create_app
from .config import ConfigError
from .deliverability.cli import dkim_group
from .dev.command import dev_command


def _create_app() -> Flask:
    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


class ZpravodajGroup(FlaskGroup):
    """The `zpravodaj` group; `db` (Flask-Migrate) is imported only when it is asked for.

    Every `zpravodaj` command, the workers' `worker` too, goes through here,
    and only `db` needs Alembic (service/schema.py says why that matters):
    click's lazily loaded subcommands.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "db"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "db":
            # Imported here, not at the top: see the class docstring.
            from . import schema

            return schema.commands()
        return super().get_command(ctx, cmd_name)


def main() -> None:
    group = ZpravodajGroup(
        name="zpravodaj",
        create_app=_create_app,
        help="Zpravodaj: newsletter and working-group mail service.",
    )
    # Commands of this distribution's other packages (the workers' `worker`),
    # found by entry point so that `service` never imports `workers`; a group
    # of our own, since Flask's `flask.commands` would add them to every Flask
    # app installed beside this one.
    for entry in entry_points(group="zpravodaj.commands"):
        group.add_command(entry.load(), entry.name)
    group.add_command(dev_command)
    group.add_command(dkim_group)  # works before the app can load (no DKIM_* yet)
    group.main(prog_name="zpravodaj")
