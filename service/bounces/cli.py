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
    "bounces", help="Bounce messages: record them, receive them over SMTP, or poll a mailbox."
)
def bounces_group() -> None:
    pass


@bounces_group.command("process")
@click.argument("source", default="-", type=click.File("rb"))
def process_command(source: BinaryIO) -> None:
    """Record one bounce message read from SOURCE (a file, or - for stdin)."""
    raw = source.read(MAX_BOUNCE_BYTES + 1)
    try:
        report, outcomes = process_message(raw)
    except NotABounce as exc:
        click.echo(f"Není to zpráva o nedoručení: {exc}", err=True)
        sys.exit(EX_DATAERR)
    except OperationalError as exc:
        click.echo(f"Databáze není dostupná, zkuste to znovu: {exc.orig}", err=True)
        sys.exit(EX_TEMPFAIL)
    for line in describe(report, outcomes):
        click.echo(line)


def describe(report: BounceReport, outcomes: list) -> list[str]:
    """What processing one message did, in Czech lines for the operator."""
    ignored = {
        MessageKind.AUTO_REPLY: "Automatická odpověď (např. nepřítomnost), nic nezaznamenáno.",
        MessageKind.REPLY: (
            "Odpověď člověka, není to zpráva o nedoručení; přeposlána na REPLY_TO_FORWARD."
            if current_app.config.get("REPLY_TO_FORWARD")
            else "Odpověď člověka, není to zpráva o nedoručení; REPLY_TO_FORWARD není nastaveno."
        ),
        MessageKind.NOTIFICATION: "Oznámení bez chyby doručení, nic nezaznamenáno.",
        MessageKind.OTHER: "Není to zpráva o nedoručení, nic nezaznamenáno.",
    }
    if report.kind in ignored:
        return [ignored[report.kind]]
    if report.kind == MessageKind.COMPLAINT:
        return [_describe_complaint(outcome) for outcome in outcomes]
    return [_describe(outcome) for outcome in outcomes]


def _describe_complaint(outcome: ComplaintOutcome) -> str:
    who = outcome.address or "adresát"
    if not outcome.recorded:
        reason = {
            "already recorded": "už byla zaznamenána",
            "no verp": "hlášení neobsahuje naši adresu VERP, neprokazuje, o koho jde",
        }.get(outcome.note, f"typ hlášení {outcome.note} se nepočítá")
        return f"Stížnost (hlášení ARF) na {who}: nezaznamenána, {reason}."
    left = ", ".join(outcome.left) or "žádného"
    return f"Stížnost (hlášení ARF) od {who} zaznamenána; odhlášen ze seznamů: {left}."


def _describe(outcome: Outcome) -> str:
    who = outcome.address or "adresát"
    kind = {"hard": "trvalá", "soft": "dočasná"}[outcome.kind]
    status = f" ({outcome.status})" if outcome.status else ""
    if not outcome.recorded:
        reason = {
            "already recorded": "už byla zaznamenána",
            "unknown address": "adresa není v databázi",
            "no verp": "zpráva nepřišla na adresu VERP, tedy neprokazuje, že jde o naši poštu",
        }.get(outcome.note, outcome.note)
        return f"{who}: {kind} chyba{status} – nezaznamenáno, {reason}."
    line = f"{who}: {kind} chyba{status} zaznamenána"
    if outcome.note == "about us":
        line += "; vydání blokuje více poskytovatelů najednou, týká se nás, nepočítá se"
    elif outcome.kind == "soft" and outcome.note != "hash":
        line += f", dní s chybou: {outcome.score}"
    if outcome.suppressed:
        line += "; adresa je vyřazena z rozesílání"
    return line + "."


@bounces_group.command("poll")
@click.option("--once", is_flag=True, help="Handle what is in the mailbox now, then exit.")
def poll_command(once: bool) -> None:
    """Read bounces from the mailbox BOUNCE_IMAP_URL (IDLE, else every BOUNCE_IMAP_INTERVAL s)."""
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
        click.echo(f"Schránka není dostupná: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(
        f"Zpracováno zpráv: {done.processed}, už dříve zaznamenaných: {done.skipped}, "
        f"ponecháno na příště: {done.failed}."
    )


# The address also comes from the environment, so that the command is the same
# string under systemd, in compose.yaml and in the wheel test (README.md, Deployment).
@bounces_group.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="BOUNCE_SMTP_HOST",
    show_envvar=True, help="Address to listen on.",
)  # fmt: skip
@click.option(
    "--port", default=2525, show_default=True, type=int, envvar="BOUNCE_SMTP_PORT",
    show_envvar=True, help="Port to listen on.",
)  # fmt: skip
@metrics.port_options
def serve_command(host: str, port: int, metrics_port: int | None, metrics_host: str) -> None:
    """Receive bounces over SMTP (point the MX of the bounce domain, or a relay, here)."""
    # Imported by this command alone: aiosmtpd is of no use to the web and worker
    # processes that register the CLI (service/commands.py).
    from .receiver import serve

    metrics.start_port(metrics_host, metrics_port, current_app.config)
    serve(host, port)
