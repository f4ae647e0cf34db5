"""`zpravodaj bounces process|serve`: feed bounce messages in from the MTA."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click
from sqlalchemy.exc import OperationalError

from .parsing import MAX_BOUNCE_BYTES, NotABounce
from .receiver import serve
from .recording import Outcome, process_message

# sysexits.h: what an MTA's pipe transport understands. EX_DATAERR for input
# that is no bounce; EX_TEMPFAIL when the database is down, so the MTA
# keeps the bounce and tries again rather than losing it.
EX_DATAERR = 65
EX_TEMPFAIL = 75


@click.group("bounces", help="Bounce messages: record them, or receive them over SMTP.")
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
    if report.auto_reply:
        click.echo("Automatická odpověď (např. nepřítomnost), nic nezaznamenáno.")
        return
    for outcome in outcomes:
        click.echo(_describe(outcome))


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
    if outcome.kind == "soft" and outcome.note != "hash":
        line += f", dní s chybou v okně: {outcome.score}"
    if outcome.suppressed:
        line += "; adresa je vyřazena z rozesílání"
    return line + "."


# The address also comes from the environment, so that the command is the same
# string under systemd, in compose.yaml and in the wheel test (README.md, Deployment).
@bounces_group.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="BOUNCE_SMTP_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port", default=2525, show_default=True, type=int, envvar="BOUNCE_SMTP_PORT",
    show_envvar=True, help="Port to listen on.",
)  # fmt: skip
def serve_command(host: str, port: int) -> None:
    """Receive bounces over SMTP (point the MX of the bounce domain, or a relay, here)."""
    serve(host, port)
