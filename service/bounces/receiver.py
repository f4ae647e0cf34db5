"""An SMTP receiver for bounces and calendar replies: `zpravodaj bounces serve`.

Point the bounce domain's MX (or a relay's transport for bounces+*@domain
and rsvp+*@domain) at it. It accepts mail only for the bounce address and
its VERP forms, recording each message as `bounces process` would, and for
the meetings' reply addresses (`rsvp+…`, meetings/rsvp.py), recording each
calendar answer as `replies process` would. A message that is no bounce
is accepted and dropped (refusing it would make the sending MTA write a
bounce of its own to whoever forged it); a database outage answers 451, so
the sending MTA keeps the bounce and tries again later: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading

import click
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask, current_app

from ..cli_language import gettext as _
from ..meetings.replies import MAX_REPLY_BYTES, NotAReply, process_reply
from ..meetings.rsvp import RSVP_LOCAL_PART
from .inbox import process_message
from .parsing import MAX_BOUNCE_BYTES, NotABounce
from .verp import bounce_base

log = logging.getLogger(__name__)


class BounceHandler:
    """aiosmtpd handler: RCPT checks the address, DATA records the bounce."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        with app.app_context():
            local, domain = bounce_base()
        self.local = local.lower()
        self.domain = domain.lower()

    def accepts(self, address: str) -> bool:
        local, _at, domain = address.rpartition("@")
        local = local.lower()
        return domain.lower() == self.domain and any(
            local == base or local.startswith(base + "+") for base in (self.local, RSVP_LOCAL_PART)
        )

    def is_reply(self, address: str) -> bool:
        """Mail to a meeting's reply address (rsvp+…): a calendar app's answer."""
        local = address.rpartition("@")[0].lower()
        return local == RSVP_LOCAL_PART or local.startswith(RSVP_LOCAL_PART + "+")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if not self.accepts(address):
            return "550 5.1.1 Only bounces and calendar replies are received here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        # The database work blocks; keep the event loop free for other sessions.
        return await loop.run_in_executor(None, self._process, raw, list(envelope.rcpt_tos))

    def _process(self, raw: bytes, rcpt_tos: list[str]) -> str:
        if any(self.is_reply(address) for address in rcpt_tos):
            return self._process_reply(raw, rcpt_tos)
        with self.app.app_context():
            try:
                _report, outcomes = process_message(raw, rcpt_tos)
            except NotABounce as exc:
                log.info("dropped a message that is no bounce: %s", exc)
                return "250 OK"
            except Exception:
                log.exception("could not record a bounce; asking the sender to retry")
                return "451 4.3.0 Temporary failure, try again later"
        for outcome in outcomes:
            log.info(
                "bounce %s %s %s recorded=%s suppressed=%s",
                outcome.kind,
                outcome.status,
                outcome.address,
                outcome.recorded,
                outcome.suppressed,
            )
        return "250 OK"

    def _process_reply(self, raw: bytes, rcpt_tos: list[str]) -> str:
        with self.app.app_context():
            try:
                outcome = process_reply(raw, rcpt_tos)
            except NotAReply as exc:
                log.info("dropped a message to a reply address that is no calendar answer: %s", exc)
                return "250 OK"
            except Exception:
                log.exception("could not record a calendar reply; asking the sender to retry")
                return "451 4.3.0 Temporary failure, try again later"
        log.info("calendar reply %s %s", outcome.status, outcome.partstat)
        return "250 OK"


def make_controller(app: Flask, host: str, port: int) -> Controller:
    return Controller(
        BounceHandler(app),
        hostname=host,
        port=port,
        data_size_limit=max(MAX_BOUNCE_BYTES, MAX_REPLY_BYTES),
        # Bounces come in as they were sent: keep the bytes for VERP and hashing.
        decode_data=False,
        server_hostname=host,
        ident="Zpravodaj bounce receiver",
        enable_SMTPUTF8=True,
        ready_timeout=10,
    )


def serve(host: str, port: int) -> None:
    """Run until SIGINT or SIGTERM."""
    # The app itself, to hand to another thread: Flask's type hints describe
    # current_app as the app, so they do not know the proxy's method.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        # A port in use or out of range, an unknown host: say so at once, no
        # traceback (aiosmtpd would only time out after its ready_timeout).
        socket.create_server((host, port)).close()
        controller = make_controller(app, host, port)
        controller.start()
    except (OSError, OverflowError, RuntimeError) as exc:
        raise click.ClickException(
            _("Nelze naslouchat na %(where)s: %(error)s", where=f"{host}:{port}", error=exc)
        ) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    where = f"{host}:{port}"
    print(_("Přijímám zprávy o nedoručení na %(where)s (Ctrl-C ukončí).", where=where), flush=True)
    try:
        stop.wait()
    finally:
        controller.stop()
