"""The `zpravodaj` command line (DESIGN.md §5.3): a Flask CLI group for the app."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy import select

from .extensions import db
from .models import LIST_KINDS, MailingList


def _create_app() -> Flask:
    from . import create_app
    from .config import ConfigError

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def main() -> None:
    from .dev.command import dev_command

    group = FlaskGroup(
        name="zpravodaj",
        create_app=_create_app,
        help="Zpravodaj: newsletter and working-group mail service.",
    )
    group.add_command(dev_command)
    group.main(prog_name="zpravodaj")


def init_app(app: Flask) -> None:
    app.cli.add_command(lists_group)
    app.cli.add_command(subscribers_group)


SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


@click.group("lists", help="Mailing lists and working groups.")
def lists_group() -> None:
    pass


@lists_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Name shown to subscribers.")
@click.option("--kind", type=click.Choice(LIST_KINDS), default="newsletter", show_default=True)
@click.option("--description", default="", help="A sentence on what the list is for.")
def lists_create(slug: str, name: str, kind: str, description: str) -> None:
    """Create a list SLUG (lower-case letters, digits and hyphens)."""
    if not slug or not set(slug) <= SLUG_CHARS or len(slug) > 64:
        raise click.BadParameter("use lower-case letters, digits and hyphens", param_hint="SLUG")
    if db.session.scalar(select(MailingList).filter_by(slug=slug)) is not None:
        raise click.ClickException(f"list {slug!r} already exists")
    db.session.add(MailingList(slug=slug, name=name.strip(), kind=kind, description=description))
    db.session.commit()
    click.echo(f"created {kind} list {slug}")


@lists_group.command("show")
def lists_show() -> None:
    """Print the lists, one per line."""
    for row in db.session.scalars(select(MailingList).order_by(MailingList.slug)):
        click.echo(f"{row.slug}\t{row.kind}\t{row.name}")


@click.group("subscribers", help="Import and export subscribers.")
def subscribers_group() -> None:
    pass


@subscribers_group.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--list", "list_slug", required=True, help="Slug of the target list.")
@click.option(
    "--consent-source",
    required=True,
    help="Where these people gave consent, e.g. 'Mailchimp export 2026-11'.",
)
def subscribers_import(csv_file, list_slug: str, consent_source: str) -> None:
    """Import already-consented subscribers from a CSV with a header row (`email` required)."""
    from .subscriptions.transfer import ImportError_, import_subscribers

    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    if mailing_list is None:
        raise click.ClickException(f"no list {list_slug!r}")
    try:
        report = import_subscribers(csv_file, mailing_list, consent_source)
    except ImportError_ as exc:
        raise click.ClickException(str(exc)) from exc
    for line, problem in report.problems:
        click.echo(f"line {line}: {problem}", err=True)
    click.echo(
        f"imported {report.imported}, already subscribed {report.unchanged}, "
        f"skipped {len(report.problems)}",
        err=True,
    )


@subscribers_group.command("export")
@click.option("--list", "list_slug", required=True, help="Slug of the list.")
def subscribers_export(list_slug: str) -> None:
    """Write the list's subscribers as CSV to stdout."""
    from .subscriptions.transfer import export_subscribers

    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    if mailing_list is None:
        raise click.ClickException(f"no list {list_slug!r}")
    export_subscribers(mailing_list, sys.stdout)
