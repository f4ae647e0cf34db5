"""`zpravodaj replies process`: feed calendar replies to invitations in from the MTA."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click
from sqlalchemy.exc import OperationalError

from ..cli_language import gettext as _
from ..cli_language import lazy_gettext as _l
from ..cli_language import option
from .replies import MAX_REPLY_BYTES, NotAReply, process_reply

# sysexits.h, as `bounces process` uses them: EX_DATAERR for mail that is no
# calendar answer; EX_TEMPFAIL when the database is down, so the MTA keeps the
# message and tries again rather than losing the answer.
EX_DATAERR = 65
EX_TEMPFAIL = 75

# What became of a message other than a recorded answer.
DESCRIPTIONS = {
    "stale": _l("Odpověď na starší verzi pozvánky (nižší SEQUENCE); nic nezaznamenáno."),
    "closed": _l("Setkání už začalo nebo bylo zrušeno; nic nezaznamenáno."),
    "counter": _l("Návrh jiného termínu; koordinátorům skupiny jde upozornění."),
    "unknown": _l("Zpráva nepřišla na podepsanou adresu žádného setkání; nic nezaznamenáno."),
    "ignored": _l("Kalendář bez odpovědi na pozvánku; nic nezaznamenáno."),
}


@click.group("replies", help=_l("Odpovědi z kalendářů (iTIP REPLY) na pozvánky na setkání."))
def replies_group() -> None:
    pass


@replies_group.command(
    "process",
    help=_l("Zaznamená jednu odpověď z kalendáře ze SOURCE (soubor, nebo - pro standardní vstup)."),
)
@click.argument("source", default="-", type=click.File("rb"))
@option(
    "--recipient",
    "recipients",
    multiple=True,
    help=_l("Adresát z obálky (proměnná $RECIPIENT v MTA), když ho hlavičky nemusí ukázat."),
)
def process_command(source: BinaryIO, recipients: tuple[str, ...]) -> None:
    """Record one calendar reply; the exit status tells the MTA what became of it."""
    raw = source.read(MAX_REPLY_BYTES + 1)
    try:
        outcome = process_reply(raw, recipients)
    except NotAReply as exc:
        click.echo(_("Není to odpověď z kalendáře: %(reason)s", reason=exc), err=True)
        sys.exit(EX_DATAERR)
    except OperationalError as exc:
        click.echo(
            _("Databáze není dostupná, zkuste to znovu: %(error)s", error=exc.orig), err=True
        )
        sys.exit(EX_TEMPFAIL)
    if outcome.status == "recorded":
        # PARTSTAT (ACCEPTED, DECLINED…) is iCalendar's word, shown as it came.
        click.echo(_("Odpověď zaznamenána: %(partstat)s.", partstat=outcome.partstat))
    else:
        click.echo(DESCRIPTIONS[outcome.status])
