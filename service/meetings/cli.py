"""`zpravodaj replies process`: feed calendar replies to invitations in from the MTA."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click
from sqlalchemy.exc import OperationalError

from .replies import MAX_REPLY_BYTES, NotAReply, process_reply

# sysexits.h, as `bounces process` uses them: EX_DATAERR for mail that is no
# calendar answer; EX_TEMPFAIL when the database is down, so the MTA keeps the
# message and tries again rather than losing the answer.
EX_DATAERR = 65
EX_TEMPFAIL = 75

DESCRIPTIONS = {
    "recorded": "Odpověď zaznamenána: {partstat}.",
    "stale": "Odpověď na starší verzi pozvánky (nižší SEQUENCE); nic nezaznamenáno.",
    "closed": "Setkání už začalo nebo bylo zrušeno; nic nezaznamenáno.",
    "counter": "Návrh jiného termínu; koordinátorům skupiny jde upozornění.",
    "unknown": "Zpráva nepřišla na podepsanou adresu žádného setkání; nic nezaznamenáno.",
    "ignored": "Kalendář bez odpovědi na pozvánku; nic nezaznamenáno.",
}


@click.group("replies", help="Calendar replies (iTIP REPLY) to meeting invitations.")
def replies_group() -> None:
    pass


@replies_group.command("process")
@click.argument("source", default="-", type=click.File("rb"))
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    help="The envelope recipient (the MTA's $RECIPIENT), when the headers may not show it.",
)
def process_command(source: BinaryIO, recipients: tuple[str, ...]) -> None:
    """Record one calendar reply read from SOURCE (a file, or - for stdin)."""
    raw = source.read(MAX_REPLY_BYTES + 1)
    try:
        outcome = process_reply(raw, recipients)
    except NotAReply as exc:
        click.echo(f"Není to odpověď z kalendáře: {exc}", err=True)
        sys.exit(EX_DATAERR)
    except OperationalError as exc:
        click.echo(f"Databáze není dostupná, zkuste to znovu: {exc.orig}", err=True)
        sys.exit(EX_TEMPFAIL)
    click.echo(DESCRIPTIONS[outcome.status].format(partstat=outcome.partstat))
