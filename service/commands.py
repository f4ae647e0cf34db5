"""The app's own commands (DESIGN.md §5.3): lists, subscribers, users, tokens, and the rest.

`create_app` registers them (`init_app`); the `zpravodaj` command itself is cli.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

import click
from flask import Flask
from sqlalchemy import ScalarResult, select

from . import health, ledger
from .accounts import AccountError, create_token, create_user, normalise_email
from .bounces.cli import bounces_group
from .clock import utcnow
from .deliverability import cli as deliverability_cli
from .extensions import db
from .groups.membership import MembershipError, clean_group_fields
from .i18n import DEFAULT_LANGUAGE, LANGUAGES
from .meetings.cli import replies_group
from .models import GROUP_VISIBILITIES, LIST_KINDS, ApiToken, MailingList, User, is_valid_slug
from .people_csv import ImportRefused
from .progress import progress
from .subscriptions.importing import count_rows, text_of
from .subscriptions.transfer import export_subscribers, import_subscribers, subscription_count


def init_app(app: Flask) -> None:
    """Add every command group to the app's CLI."""
    register(app.cli)


def register(group: click.Group) -> None:
    """Add the app's commands to `group`: the app's CLI, or cli.py's list for help without one."""
    group.add_command(lists_group)
    group.add_command(subscribers_group)
    group.add_command(users_group)
    group.add_command(tokens_group)
    deliverability_cli.register(group)
    group.add_command(bounces_group)
    group.add_command(replies_group)
    group.add_command(ledger.consent_group)
    group.add_command(health.status_command)


@click.group("lists", help="Mailing lists and working groups.")
def lists_group() -> None:
    pass


def _group_options(command):
    """The working-group details, shared by `lists create` and `lists update`."""
    options = (
        click.option("--municipality", default=None, help="Group: the municipality (obec)."),
        click.option("--theme", default=None, help="Group: its theme."),
        click.option("--department", default=None, help="Group: the organising department."),
        click.option("--meeting-place", default=None, help="Group: where it usually meets."),
        click.option("--meeting-rhythm", default=None, help="Group: how often it meets."),
        click.option(
            "--visibility",
            type=click.Choice(GROUP_VISIBILITIES),
            default=None,
            help="Group: public (listed, join requests) or invite (invitation only).",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _group_values(kind: str, **values: str | None) -> dict[str, str]:
    """The group options given; refused for a newsletter, which has none of them."""
    given = {name: value for name, value in values.items() if value is not None}
    if given and kind != "group":
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags}: only for working groups (--kind group).")
    return given


def _apply_list_details(mailing_list: MailingList, values: dict[str, str | None]) -> None:
    try:
        cleaned = clean_group_fields(values)
    except MembershipError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, value in cleaned.items():
        setattr(mailing_list, name, value)


@lists_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Name shown to subscribers.")
@click.option("--kind", type=click.Choice(LIST_KINDS), default="newsletter", show_default=True)
@click.option("--description", default="", help="A sentence on what the list is for.")
@click.option(
    "--language",
    type=click.Choice(LANGUAGES),
    default=DEFAULT_LANGUAGE,
    show_default=True,
    help="The language its issues are written in (their mails' fixed parts follow it).",
)
@_group_options
def lists_create(
    slug: str, name: str, kind: str, description: str, language: str, **group_options: str | None
) -> None:
    """Create a list SLUG (lower-case letters, digits and hyphens)."""
    if not is_valid_slug(slug):
        raise click.BadParameter("use lower-case letters, digits and hyphens", param_hint="SLUG")
    if db.session.scalar(select(MailingList).filter_by(slug=slug)) is not None:
        raise click.ClickException(f"list {slug!r} already exists")
    values = _group_values(kind, **group_options)
    mailing_list = MailingList(slug=slug, kind=kind)
    details: dict[str, str | None] = {
        "name": name,
        "description": description,
        "language": language,
        **values,
    }
    _apply_list_details(mailing_list, details)
    db.session.add(mailing_list)
    db.session.commit()
    click.echo(f"created {kind} list {slug}")


@lists_group.command("update")
@click.argument("slug")
@click.option("--name", default=None, help="Name shown to subscribers.")
@click.option("--description", default=None, help="A sentence on what the list is for.")
@click.option(
    "--language", type=click.Choice(LANGUAGES), default=None, help="The language of its issues."
)
@_group_options
def lists_update(slug: str, **options: str | None) -> None:
    """Change a list's name, description or (for a group) its details; the rest stays."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    if mailing_list is None:
        raise click.ClickException(f"no list {slug!r}")
    common = {name: options.pop(name) for name in ("name", "description", "language")}
    values = _group_values(mailing_list.kind, **options)
    if all(value is None for value in common.values()) and not values:
        raise click.UsageError("nothing to change: give at least one option (see --help).")
    _apply_list_details(mailing_list, {**common, **values})
    db.session.commit()
    click.echo(f"updated {mailing_list.kind} list {slug}")


# What `lists show` prints under a group, in this order.
GROUP_SHOWN = (
    ("municipality", "municipality"),
    ("theme", "theme"),
    ("department", "department"),
    ("meeting_place", "meeting place"),
    ("meeting_rhythm", "meeting rhythm"),
    ("visibility", "visibility"),
    ("description", "description"),
)


@lists_group.command("show")
@click.argument("slug", required=False)
def lists_show(slug: str | None) -> None:
    """Print the lists, one per line; its content language and a group's details below it."""
    query = select(MailingList).order_by(MailingList.slug)
    if slug is not None:
        query = query.filter_by(slug=slug)
    rows = db.session.scalars(query).all()
    if slug is not None and not rows:
        raise click.ClickException(f"no list {slug!r}")
    for row in rows:
        click.echo(f"{row.slug}\t{row.kind}\t{row.name}")
        click.echo(f"  language: {row.language}")
        if row.kind != "group":
            continue
        for attribute, label in GROUP_SHOWN:
            value = " ".join(str(getattr(row, attribute) or "").split())
            if value:
                click.echo(f"  {label}: {value}")
        coordinators = sorted(u.email for u in _coordinators_of(row))
        if coordinators:
            click.echo(f"  coordinators: {', '.join(coordinators)}")


def _coordinators_of(mailing_list: MailingList) -> ScalarResult[User]:
    return db.session.scalars(select(User).where(User.lists.contains(mailing_list)))


@click.group("subscribers", help="Import and export subscribers.")
def subscribers_group() -> None:
    pass


@subscribers_group.command("import")
@click.argument("csv_file", type=click.File("rb"))
@click.option("--list", "list_slug", required=True, help="Slug of the target list.")
@click.option(
    "--consent-source",
    required=True,
    help="Where these people gave consent, e.g. 'Mailchimp export 2026-11'.",
)
def subscribers_import(csv_file: BinaryIO, list_slug: str, consent_source: str) -> None:
    """Import already-consented subscribers from a CSV with a header row (`email` required).

    Its findings are the admin upload's, in the same Czech words.
    """
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    if mailing_list is None:
        raise click.ClickException(f"seznam {list_slug!r} neexistuje")
    with _seekable(csv_file) as source:
        try:
            # Read through once first: an unreadable file is refused before any row
            # lands, and the progress bar knows its length. Then a chunk at a time.
            total = count_rows(source)
            source.seek(0)
            text = text_of(source)
            with progress(total, "Import") as step:
                report = import_subscribers(text, mailing_list, consent_source, on_rows=step)
            text.detach()  # the file is closed by whoever opened it
        except ImportRefused as exc:
            raise click.ClickException(f"Import se neprovedl: {exc}") from exc
    for line, problem in report.problems:
        click.echo(f"řádek {line}: {problem}", err=True)
    click.echo(
        f"importováno {report.imported}, už přihlášeno {report.unchanged}, "
        f"přeskočeno {len(report.problems)}",
        err=True,
    )


@contextlib.contextmanager
def _seekable(stream: BinaryIO) -> Iterator[BinaryIO]:
    """The file as given, or (stdin, a pipe) copied to a temporary file to be read twice."""
    if stream.seekable():
        yield stream
        return
    with tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(stream, copy)
        copy.seek(0)
        yield copy


@subscribers_group.command("export")
@click.option("--list", "list_slug", required=True, help="Slug of the list.")
def subscribers_export(list_slug: str) -> None:
    """Write the list's subscribers as CSV to stdout."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    if mailing_list is None:
        raise click.ClickException(f"no list {list_slug!r}")
    with progress(subscription_count(mailing_list), "Export") as step:
        export_subscribers(mailing_list, sys.stdout, on_row=step)


# --- accounts and API tokens ---------------------------------------------------


def _read_new_password() -> str:
    """The new password, typed twice: hidden on a terminal, two lines from a pipe.

    getpass would read from /dev/tty even when stdin is a pipe, so a script that
    pipes the two lines into `zpravodaj users create …` is read from stdin here.
    """
    stdin = sys.stdin
    if stdin.isatty():
        return click.prompt("Heslo", hide_input=True, confirmation_prompt="Heslo znovu")
    first, second = stdin.readline(), stdin.readline()
    if not first or not second:
        raise click.ClickException("Zadejte heslo dvakrát: dva řádky na standardním vstupu.")
    first, second = first.rstrip("\r\n"), second.rstrip("\r\n")
    if first != second:
        raise click.ClickException("Zadaná hesla se neshodují.")
    return first


def _user_by_email(email: str) -> User:
    user = db.session.scalar(select(User).filter_by(email=normalise_email(email)))
    if user is None:
        raise click.ClickException(f"Účet {email} neexistuje.")
    return user


@click.group("users", help="Accounts of administrators, editors and group coordinators.")
def users_group() -> None:
    pass


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(("admin", "editor", "coordinator")), required=True)
@click.option(
    "--list",
    "list_slugs",
    multiple=True,
    metavar="SLUG",
    help="A working group the coordinator manages (repeatable; coordinators only).",
)
def users_create(email: str, role: str, list_slugs: tuple[str, ...]) -> None:
    """Create an account; the password is read twice from stdin."""
    lists = []
    for slug in dict.fromkeys(list_slugs):
        mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
        if mailing_list is None:
            raise click.ClickException(f"Seznam {slug!r} neexistuje.")
        if role == "coordinator" and mailing_list.kind != "group":
            # Coordinators send to their own working groups, never to newsletters.
            raise click.ClickException(
                f"Seznam {slug!r} není pracovní skupina; koordinátor spravuje jen skupiny."
            )
        lists.append(mailing_list)
    # Refuse what needs no password before asking for one.
    if role == "coordinator" and not lists:
        raise click.ClickException(
            "Koordinátor musí mít přidělenou alespoň jednu skupinu (--list)."
        )
    password = _read_new_password()
    try:
        user = create_user(email, password, role, lists)
        db.session.commit()
    except AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Účet {user.email} ({role}) vytvořen.", err=True)


@users_group.command("list")
def users_list() -> None:
    """Print the accounts, one per line: email, role, active, lists."""
    for user in db.session.scalars(select(User).order_by(User.email)):
        lists = ",".join(sorted(m.slug for m in user.lists))
        state = "active" if user.active else "inactive"
        click.echo(f"{user.email}\t{user.role}\t{state}\t{lists}")


@click.group("tokens", help="API tokens (Authorization: Bearer) of accounts.")
def tokens_group() -> None:
    pass


@tokens_group.command("create")
@click.argument("email")
def tokens_create(email: str) -> None:
    """Print a new API token for the account; it is shown only this once."""
    user = _user_by_email(email)
    if not user.active:
        raise click.ClickException(f"Účet {user.email} je vypnutý.")
    token = create_token(user)
    db.session.commit()
    click.echo(token)


@tokens_group.command("list")
@click.argument("email", required=False)
def tokens_list(email: str | None) -> None:
    """Print tokens (prefix, account, created, last used, revoked), of one account or all."""
    query = select(ApiToken).order_by(ApiToken.created_at)
    if email:
        query = query.filter_by(user_id=_user_by_email(email).id)
    for row in db.session.scalars(query):
        times = (row.created_at, row.last_used_at, row.revoked_at)
        shown = [t.isoformat(timespec="seconds") + "Z" if t else "-" for t in times]
        click.echo("\t".join([row.prefix, row.user.email, *shown]))


@tokens_group.command("revoke")
@click.argument("token_or_prefix")
def tokens_revoke(token_or_prefix: str) -> None:
    """Revoke a token, given whole or by the prefix `tokens list` shows."""
    value = token_or_prefix.strip()
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    rows = db.session.scalars(select(ApiToken).filter_by(token_hash=digest)).all()
    if not rows and len(value) >= 8:
        rows = db.session.scalars(
            select(ApiToken).where(ApiToken.prefix == value[:12], ApiToken.revoked_at.is_(None))
        ).all()
    if not rows:
        raise click.ClickException("Takový token neexistuje.")
    if len(rows) > 1:
        raise click.ClickException("Prefix odpovídá více tokenům; zadejte celý token.")
    if rows[0].revoked_at is None:
        rows[0].revoked_at = utcnow()
        db.session.commit()
    click.echo(f"Token {rows[0].prefix}… účtu {rows[0].user.email} je zrušen.", err=True)
