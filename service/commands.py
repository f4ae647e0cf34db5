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
from .cli_language import gettext as _
from .cli_language import lazy_gettext as _l
from .cli_language import option
from .clock import utcnow
from .deliverability import cli as deliverability_cli
from .extensions import db
from .groups.membership import MembershipError, clean_group_fields
from .i18n import DEFAULT_LANGUAGE, LANGUAGES
from .meetings.cli import replies_group
from .models import GROUP_VISIBILITIES, LIST_KINDS, ApiToken, MailingList, User, is_valid_slug
from .people_csv import ImportRefused
from .progress import progress
from .stored_messages import shown
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


@click.group("lists", help=_l("Seznamy a pracovní skupiny."))
def lists_group() -> None:
    pass


def _group_options(command):
    """The working-group details, shared by `lists create` and `lists update`."""
    options = (
        option("--municipality", default=None, help=_l("Skupina: obec.")),
        option("--theme", default=None, help=_l("Skupina: její téma.")),
        option("--department", default=None, help=_l("Skupina: odbor, který ji vede.")),
        option("--meeting-place", default=None, help=_l("Skupina: kde se obvykle schází.")),
        option("--meeting-rhythm", default=None, help=_l("Skupina: jak často se schází.")),
        option(
            "--visibility",
            type=click.Choice(GROUP_VISIBILITIES),
            default=None,
            help=_l(
                "Skupina: public (veřejná, přijímá žádosti o členství) nebo invite (jen na "
                "pozvání)."
            ),
        ),
    )
    for decorate in reversed(options):
        command = decorate(command)
    return command


def _group_values(kind: str, **values: str | None) -> dict[str, str]:
    """The group options given; refused for a newsletter, which has none of them."""
    given = {name: value for name, value in values.items() if value is not None}
    if given and kind != "group":
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(
            _("%(flags)s: jen pro pracovní skupiny (--kind group).", flags=flags)
        )
    return given


def _apply_list_details(mailing_list: MailingList, values: dict[str, str | None]) -> None:
    try:
        cleaned = clean_group_fields(values)
    except MembershipError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, value in cleaned.items():
        setattr(mailing_list, name, value)


@lists_group.command("create", help=_l("Vytvoří seznam SLUG (malá písmena, číslice a spojovníky)."))
@click.argument("slug")
@option("--name", required=True, help=_l("Název, který uvidí odběratelé."))
@click.option("--kind", type=click.Choice(LIST_KINDS), default="newsletter", show_default=True)
@option("--description", default="", help=_l("Věta o tom, k čemu seznam je."))
@option(
    "--language",
    type=click.Choice(LANGUAGES),
    default=DEFAULT_LANGUAGE,
    show_default=True,
    help=_l("Jazyk, ve kterém se píší jeho vydání (řídí se jím i pevné části jejich e-mailů)."),
)
@_group_options
def lists_create(
    slug: str, name: str, kind: str, description: str, language: str, **group_options: str | None
) -> None:
    """Create a list with its details (a group's checked as the admin checks them)."""
    if not is_valid_slug(slug):
        raise click.BadParameter(
            _("použijte malá písmena, číslice a spojovníky"), param_hint="SLUG"
        )
    if db.session.scalar(select(MailingList).filter_by(slug=slug)) is not None:
        raise click.ClickException(_("Seznam '%(slug)s' už existuje.", slug=slug))
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
    if kind == "group":
        click.echo(_("Pracovní skupina %(slug)s vytvořena.", slug=slug))
    else:
        click.echo(_("Zpravodaj %(slug)s vytvořen.", slug=slug))


@lists_group.command(
    "update",
    help=_l("Změní název, popis nebo (u skupiny) její údaje; co není zadáno, zůstane."),
)
@click.argument("slug")
@option("--name", default=None, help=_l("Název, který uvidí odběratelé."))
@option("--description", default=None, help=_l("Věta o tom, k čemu seznam je."))
@option("--language", type=click.Choice(LANGUAGES), default=None, help=_l("Jazyk jeho vydání."))
@_group_options
def lists_update(slug: str, **options: str | None) -> None:
    """Change what is given of a list, keep the rest."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    if mailing_list is None:
        raise click.ClickException(_("Seznam '%(slug)s' neexistuje.", slug=slug))
    common = {name: options.pop(name) for name in ("name", "description", "language")}
    values = _group_values(mailing_list.kind, **options)
    if all(value is None for value in common.values()) and not values:
        raise click.UsageError(_("Není co měnit: zadejte aspoň jednu volbu (viz --help)."))
    _apply_list_details(mailing_list, {**common, **values})
    db.session.commit()
    if mailing_list.kind == "group":
        click.echo(_("Pracovní skupina %(slug)s změněna.", slug=slug))
    else:
        click.echo(_("Zpravodaj %(slug)s změněn.", slug=slug))


# What `lists show` prints under a group, in this order.
GROUP_SHOWN = (
    ("municipality", _l("obec")),
    ("theme", _l("téma")),
    ("department", _l("odbor")),
    ("meeting_place", _l("místo setkání")),
    ("meeting_rhythm", _l("jak často se schází")),
    ("visibility", _l("viditelnost")),
    ("description", _l("popis")),
)
LANGUAGE_SHOWN = _l("jazyk")
COORDINATORS_SHOWN = _l("koordinátoři")


@lists_group.command(
    "show",
    help=_l(
        "Vypíše seznamy, jeden na řádek (slug, druh, název); pod každým jazyk jeho obsahu "
        "a u skupiny její údaje."
    ),
)
@click.argument("slug", required=False)
def lists_show(slug: str | None) -> None:
    """The lists, a tab-separated line each, details indented below."""
    query = select(MailingList).order_by(MailingList.slug)
    if slug is not None:
        query = query.filter_by(slug=slug)
    rows = db.session.scalars(query).all()
    if slug is not None and not rows:
        raise click.ClickException(_("Seznam '%(slug)s' neexistuje.", slug=slug))
    for row in rows:
        click.echo(f"{row.slug}\t{row.kind}\t{row.name}")
        click.echo(f"  {LANGUAGE_SHOWN}: {row.language}")
        if row.kind != "group":
            continue
        for attribute, label in GROUP_SHOWN:
            value = " ".join(str(getattr(row, attribute) or "").split())
            if value:
                click.echo(f"  {label}: {value}")
        coordinators = sorted(u.email for u in _coordinators_of(row))
        if coordinators:
            click.echo(f"  {COORDINATORS_SHOWN}: {', '.join(coordinators)}")


def _coordinators_of(mailing_list: MailingList) -> ScalarResult[User]:
    return db.session.scalars(select(User).where(User.lists.contains(mailing_list)))


@click.group("subscribers", help=_l("Import a export odběratelů."))
def subscribers_group() -> None:
    pass


@subscribers_group.command(
    "import",
    help=_l(
        "Importuje odběratele, kteří souhlas dali jinde, z CSV se záhlavím (sloupec `email` "
        "je povinný)."
    ),
)
@click.argument("csv_file", type=click.File("rb"))
@option("--list", "list_slug", required=True, help=_l("Slug cílového seznamu."))
@option(
    "--consent-source",
    required=True,
    help=_l("Kde tito lidé dali souhlas, např. 'export z Mailchimpu 2026-11'."),
)
def subscribers_import(csv_file: BinaryIO, list_slug: str, consent_source: str) -> None:
    """Import already-consented subscribers; its findings are the admin upload's, in its words."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    if mailing_list is None:
        raise click.ClickException(_("seznam '%(slug)s' neexistuje", slug=list_slug))
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
            reason = shown(str(exc))  # the importer's refusals are stored messages
            raise click.ClickException(_("Import se neprovedl: %(reason)s", reason=reason)) from exc
    for line, problem in report.problems:
        click.echo(_("řádek %(line)d: %(problem)s", line=line, problem=shown(problem)), err=True)
    summary = _(
        "importováno %(imported)d, už přihlášeno %(unchanged)d, přeskočeno %(skipped)d",
        imported=report.imported,
        unchanged=report.unchanged,
        skipped=len(report.problems),
    )
    click.echo(summary, err=True)


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


@subscribers_group.command(
    "export", help=_l("Vypíše odběratele seznamu jako CSV na standardní výstup.")
)
@option("--list", "list_slug", required=True, help=_l("Slug seznamu."))
def subscribers_export(list_slug: str) -> None:
    """The list's subscribers as CSV on stdout (its columns are the contract's, untranslated)."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    if mailing_list is None:
        raise click.ClickException(_("Seznam '%(slug)s' neexistuje.", slug=list_slug))
    with progress(subscription_count(mailing_list), "Export") as step:
        export_subscribers(mailing_list, sys.stdout, on_rows=step)


# --- accounts and API tokens ---------------------------------------------------


def _read_new_password() -> str:
    """The new password, typed twice: hidden on a terminal, two lines from a pipe.

    getpass would read from /dev/tty even when stdin is a pipe, so a script that
    pipes the two lines into `zpravodaj users create …` is read from stdin here.
    """
    stdin = sys.stdin
    if stdin.isatty():
        return click.prompt(_("Heslo"), hide_input=True, confirmation_prompt=_("Heslo znovu"))
    first, second = stdin.readline(), stdin.readline()
    if not first or not second:
        raise click.ClickException(_("Zadejte heslo dvakrát: dva řádky na standardním vstupu."))
    first, second = first.rstrip("\r\n"), second.rstrip("\r\n")
    if first != second:
        raise click.ClickException(_("Zadaná hesla se neshodují."))
    return first


def _user_by_email(email: str) -> User:
    user = db.session.scalar(select(User).filter_by(email=normalise_email(email)))
    if user is None:
        raise click.ClickException(_("Účet %(email)s neexistuje.", email=email))
    return user


@click.group("users", help=_l("Účty administrátorů, redaktorů a koordinátorů skupin."))
def users_group() -> None:
    pass


@users_group.command(
    "create", help=_l("Vytvoří účet; heslo přečte dvakrát ze standardního vstupu.")
)
@click.argument("email")
@click.option("--role", type=click.Choice(("admin", "editor", "coordinator")), required=True)
@option(
    "--list",
    "list_slugs",
    multiple=True,
    metavar="SLUG",
    help=_l("Pracovní skupina, kterou koordinátor spravuje (lze opakovat; jen koordinátoři)."),
)
def users_create(email: str, role: str, list_slugs: tuple[str, ...]) -> None:
    """Create an account, refusing what needs no password before asking for one."""
    lists = []
    for slug in dict.fromkeys(list_slugs):
        mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
        if mailing_list is None:
            raise click.ClickException(_("Seznam '%(slug)s' neexistuje.", slug=slug))
        if role == "coordinator" and mailing_list.kind != "group":
            # Coordinators send to their own working groups, never to newsletters.
            raise click.ClickException(
                _(
                    "Seznam '%(slug)s' není pracovní skupina; koordinátor spravuje jen skupiny.",
                    slug=slug,
                )
            )
        lists.append(mailing_list)
    # Refuse what needs no password before asking for one.
    if role == "coordinator" and not lists:
        raise click.ClickException(
            _("Koordinátor musí mít přidělenou alespoň jednu skupinu (--list).")
        )
    password = _read_new_password()
    try:
        user = create_user(email, password, role, lists)
        db.session.commit()
    except AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(_("Účet %(email)s (%(role)s) vytvořen.", email=user.email, role=role), err=True)


@users_group.command(
    "list",
    help=_l("Vypíše účty, jeden na řádek: e-mail, role, active/inactive, seznamy."),
)
def users_list() -> None:
    """The accounts, tab-separated (the values untranslated, for scripts)."""
    for user in db.session.scalars(select(User).order_by(User.email)):
        lists = ",".join(sorted(m.slug for m in user.lists))
        state = "active" if user.active else "inactive"
        click.echo(f"{user.email}\t{user.role}\t{state}\t{lists}")


@click.group("tokens", help=_l("API tokeny účtů (Authorization: Bearer)."))
def tokens_group() -> None:
    pass


@tokens_group.command("create", help=_l("Vypíše nový API token účtu; ukáže se jen tentokrát."))
@click.argument("email")
def tokens_create(email: str) -> None:
    """A new token on stdout, alone on its line (for scripts)."""
    user = _user_by_email(email)
    if not user.active:
        raise click.ClickException(_("Účet %(email)s je vypnutý.", email=user.email))
    token = create_token(user)
    db.session.commit()
    click.echo(token)


@tokens_group.command(
    "list",
    help=_l(
        "Vypíše tokeny (prefix, účet, vytvořen, naposledy použit, zrušen) jednoho účtu nebo všech."
    ),
)
@click.argument("email", required=False)
def tokens_list(email: str | None) -> None:
    """The tokens, tab-separated, times in UTC ISO 8601 (for scripts)."""
    query = select(ApiToken).order_by(ApiToken.created_at)
    if email:
        query = query.filter_by(user_id=_user_by_email(email).id)
    for row in db.session.scalars(query):
        times = (row.created_at, row.last_used_at, row.revoked_at)
        shown = [t.isoformat(timespec="seconds") + "Z" if t else "-" for t in times]
        click.echo("\t".join([row.prefix, row.user.email, *shown]))


@tokens_group.command(
    "revoke", help=_l("Zruší token zadaný celý nebo prefixem, který ukazuje `tokens list`.")
)
@click.argument("token_or_prefix")
def tokens_revoke(token_or_prefix: str) -> None:
    """Revoke a token; revoking one twice is harmless."""
    value = token_or_prefix.strip()
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    rows = db.session.scalars(select(ApiToken).filter_by(token_hash=digest)).all()
    if not rows and len(value) >= 8:
        rows = db.session.scalars(
            select(ApiToken).where(ApiToken.prefix == value[:12], ApiToken.revoked_at.is_(None))
        ).all()
    if not rows:
        raise click.ClickException(_("Takový token neexistuje."))
    if len(rows) > 1:
        raise click.ClickException(_("Prefix odpovídá více tokenům; zadejte celý token."))
    if rows[0].revoked_at is None:
        rows[0].revoked_at = utcnow()
        db.session.commit()
    click.echo(
        _(
            "Token %(prefix)s… účtu %(email)s je zrušen.",
            prefix=rows[0].prefix,
            email=rows[0].user.email,
        ),
        err=True,
    )
