"""`zpravodaj bounces process|serve`: feed bounce messages in from the MTA."""

from __future__ import annotations

import signal
import sys
import threading
from typing import BinaryIO

import click
from flask import current_app
from sqlalchemy.exc import OperationalError

from .. import metrics
from ..cli_language import gettext as _
from ..cli_language import lazy_gettext as _l
from ..cli_language import option
from .complaints import ComplaintOutcome
from .inbox import process_message
from .parsing import MAX_BOUNCE_BYTES, BounceReport, MessageKind, NotABounce
from .recording import Outcome

# sysexits.h: what an MTA's pipe transport understands. EX_DATAERR for input
# that is no bounce; EX_TEMPFAIL when the database is down, so the MTA
# keeps the bounce and tries again rather than losing it.
EX_DATAERR = 65
EX_CONFIG = 78
EX_TEMPFAIL = 75


@click.group(
    "bounces",
    help=_l("Zprávy o nedoručení: zaznamenat je, přijímat je přes SMTP nebo je číst ze schránky."),
)
def bounces_group() -> None:
    pass


@bounces_group.command(
    "process",
    help=_l("Zaznamená jednu zprávu o nedoručení ze SOURCE (soubor, nebo - pro standardní vstup)."),
)
@click.argument("source", default="-", type=click.File("rb"))
def process_command(source: BinaryIO) -> None:
    """Record one bounce message; the exit status tells the MTA what became of it."""
    raw = source.read(MAX_BOUNCE_BYTES + 1)
    try:
        report, outcomes = process_message(raw)
    except NotABounce as exc:
        click.echo(_("Není to zpráva o nedoručení: %(reason)s", reason=exc), err=True)
        sys.exit(EX_DATAERR)
    except OperationalError as exc:
        click.echo(
            _("Databáze není dostupná, zkuste to znovu: %(error)s", error=exc.orig), err=True
        )
        sys.exit(EX_TEMPFAIL)
    for line in describe(report, outcomes):
        click.echo(line)


def describe(report: BounceReport, outcomes: list) -> list[str]:
    """What processing one message did, in lines for the operator (in the CLI's language)."""
    ignored = {
        MessageKind.AUTO_REPLY: _("Automatická odpověď (např. nepřítomnost), nic nezaznamenáno."),
        MessageKind.REPLY: (
            _("Odpověď člověka, není to zpráva o nedoručení; přeposlána na REPLY_TO_FORWARD.")
            if current_app.config.get("REPLY_TO_FORWARD")
            else _("Odpověď člověka, není to zpráva o nedoručení; REPLY_TO_FORWARD není nastaveno.")
        ),
        MessageKind.NOTIFICATION: _("Oznámení bez chyby doručení, nic nezaznamenáno."),
        MessageKind.OTHER: _("Není to zpráva o nedoručení, nic nezaznamenáno."),
    }
    if report.kind in ignored:
        return [ignored[report.kind]]
    if report.kind == MessageKind.COMPLAINT:
        return [_describe_complaint(outcome) for outcome in outcomes]
    return [_describe(outcome) for outcome in outcomes]


def _describe_complaint(outcome: ComplaintOutcome) -> str:
    who = outcome.address or _("adresát")
    if not outcome.recorded:
        reason = {
            "already recorded": _("už byla zaznamenána"),
            "no verp": _("hlášení neobsahuje naši adresu VERP, neprokazuje, o koho jde"),
        }.get(outcome.note) or _("typ hlášení %(type)s se nepočítá", type=outcome.note)
        return _(
            "Stížnost (hlášení ARF) na %(who)s: nezaznamenána, %(reason)s.", who=who, reason=reason
        )
    left = ", ".join(outcome.left) or _("žádného")
    return _(
        "Stížnost (hlášení ARF) od %(who)s zaznamenána; odhlášen ze seznamů: %(lists)s.",
        who=who,
        lists=left,
    )


def _describe(outcome: Outcome) -> str:
    who = outcome.address or _("adresát")
    kind = {"hard": _("trvalá chyba"), "soft": _("dočasná chyba")}[outcome.kind]
    status = f" ({outcome.status})" if outcome.status else ""
    if not outcome.recorded:
        reason = {
            "already recorded": _("už byla zaznamenána"),
            "unknown address": _("adresa není v databázi"),
            "no verp": _("zpráva nepřišla na adresu VERP, tedy neprokazuje, že jde o naši poštu"),
        }.get(outcome.note, outcome.note)
        return _(
            "%(who)s: %(kind)s – nezaznamenáno, %(reason)s.",
            who=who,
            kind=kind + status,
            reason=reason,
        )
    line = _("%(who)s: %(kind)s zaznamenána", who=who, kind=kind + status)
    if outcome.note == "about us":
        line += _("; vydání blokuje více poskytovatelů najednou, týká se nás, nepočítá se")
    elif outcome.kind == "soft" and outcome.note != "hash":
        line += _(", dní s chybou: %(days)d", days=outcome.score)
    if outcome.suppressed:
        line += _("; adresa je vyřazena z rozesílání")
    return line + "."


@bounces_group.command(
    "poll",
    help=_l(
        "Čte zprávy o nedoručení ze schránky BOUNCE_IMAP_URL (IDLE, jinak každých "
        "BOUNCE_IMAP_INTERVAL s)."
    ),
)
@option("--once", is_flag=True, help=_l("Zpracuje, co je ve schránce teď, a skončí."))
def poll_command(once: bool) -> None:
    """Read the bounce mailbox until SIGTERM (or once)."""
    # Imported by this command alone: imapclient is of no use to the web and worker
    # processes that register the CLI (service/commands.py).
    from . import mailbox

    config = current_app.config
    stop = threading.Event()
    # SIGTERM (systemd stop) ends the loop between messages, never in the middle of one.
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        done = mailbox.run(
            config["BOUNCE_IMAP_URL"], config["BOUNCE_IMAP_INTERVAL"], once=once, stop=stop,
            bar=True,
        )  # fmt: skip
    except mailbox.MailboxError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EX_CONFIG)
    except (OSError, mailbox.IMAPClientError) as exc:
        click.echo(_("Schránka není dostupná: %(error)s", error=exc), err=True)
        sys.exit(EX_TEMPFAIL)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(
        _(
            "Zpracováno zpráv: %(processed)d, už dříve zaznamenaných: %(skipped)d, "
            "ponecháno na příště: %(failed)d.",
            processed=done.processed,
            skipped=done.skipped,
            failed=done.failed,
        )
    )


# The address also comes from the environment, so that the command is the same
# string under systemd, in compose.yaml and in the wheel test (README.md, Deployment).
@bounces_group.command(
    "serve",
    help=_l(
        "Přijímá zprávy o nedoručení přes SMTP (nasměrujte sem MX domény pro nedoručenky, "
        "nebo relay)."
    ),
)
@option(
    "--host", default="127.0.0.1", show_default=True, envvar="BOUNCE_SMTP_HOST",
    show_envvar=True, help=_l("Adresa, na které naslouchá."),
)  # fmt: skip
@option(
    "--port", default=2525, show_default=True, type=int, envvar="BOUNCE_SMTP_PORT",
    show_envvar=True, help=_l("Port, na kterém naslouchá."),
)  # fmt: skip
@metrics.port_options
def serve_command(host: str, port: int, metrics_port: int | None, metrics_host: str) -> None:
    """Receive bounces (and calendar replies) over SMTP until SIGTERM."""
    # Imported by this command alone: aiosmtpd is of no use to the web and worker
    # processes that register the CLI (service/commands.py).
    from .receiver import serve

    metrics.start_port(metrics_host, metrics_port, current_app.config)
    serve(host, port)
