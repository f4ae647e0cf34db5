"""A local SMTP server that keeps every mail instead of delivering it (aiosmtpd).

The dev command stores the mails as .eml files for the outbox page; the tests
keep them in memory and read them back.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .processes import free_port


@dataclass
class CaughtMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


class MailCatcher:
    """aiosmtpd handler: accepts everything, keeps it in `mails` (and in `directory`)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.mails: list[CaughtMail] = []
        self.directory = Path(directory) if directory else None
        self._lock = threading.Lock()
        # Tests set these to make the server refuse: a code and a message.
        self.reject_rcpt: dict[str, tuple[int, str]] = {}
        self.reject_data: tuple[int, str] | None = None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.reject_rcpt:
            code, text = self.reject_rcpt[address]
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.reject_data is not None:
            code, text = self.reject_data
            return f"{code} {text}"
        # Both are set by the time DATA comes (MAIL FROM <> is "").
        mail = CaughtMail(
            envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b""
        )
        with self._lock:
            self.mails.append(mail)
            if self.directory is not None:
                self._store(self.directory, mail)
        return "250 Message accepted"

    def _store(self, directory: Path, mail: CaughtMail) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"{time.time_ns()}"
        (directory / f"{stem}.eml").write_bytes(mail.data)
        (directory / f"{stem}.json").write_text(
            json.dumps({"mail_from": mail.mail_from, "rcpt_tos": mail.rcpt_tos})
        )

    def clear(self) -> None:
        with self._lock:
            self.mails.clear()


def start_catcher(catcher: MailCatcher, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Run `catcher` on host:port (0 picks a free port); `controller.port` says which."""
    port = port or free_port(host)
    controller = Controller(
        catcher,
        hostname=host,
        port=port,
        enable_SMTPUTF8=True,
        decode_data=False,
        ready_timeout=10,
    )
    controller.start()
    return controller
