"""The `zpravodaj` command line (DESIGN.md §5.3): a Flask CLI group for the app.

The app's own commands are in commands.py; here are the entry point and the
commands that run before (or without) an app: `dev` and `dkim keygen`.
"""

from __future__ import annotations

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


def main() -> None:
    group = FlaskGroup(
        name="zpravodaj",
        create_app=_create_app,
        help="Zpravodaj: newsletter and working-group mail service.",
    )
    group.add_command(dev_command)
    group.add_command(dkim_group)  # works before the app can load (no DKIM_* yet)
    group.main(prog_name="zpravodaj")
