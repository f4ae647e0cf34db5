"""Sending over SMTP as SMTP_URL says: plain, STARTTLS or TLS, with optional login.

One connection serves a whole job (many messages in a batch job); errors are
sorted into permanent (5xx: record and move on) and transient (4xx, network:
retry later).

The answer to a whole message (after its final dot) is waited for
`SMTP_DATA_TIMEOUT` (10 minutes, RFC 5321 §4.5.3.2.6), not `SMTP_TIMEOUT`: the
server has the message by then, and giving up early is what sends it twice
(the message is put back and sent again, since it may not have arrived).
"""

from __future__ import annotations

import contextlib
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable

from redis import Redis

from service import metrics, worker_status
from service.addresses import SMTPUTF8_CAPABILITY_KEY
from service.deliverability.dkim import DkimError, DkimKeyError
from service.smtp_settings import SmtpSettings


class PermanentFailure(Exception):
    """The server refused for good (5xx): retrying will not help."""


class RecipientRefused(PermanentFailure):
    """The server refused this recipient for good at RCPT TO: as good as a bounce."""


class TransientFailure(Exception):
    """The server is unreachable or said try later (4xx): retry with backoff."""


class ServerUnavailable(TransientFailure):
    """No usable connection (refused, lost, login failed): nothing can be sent now."""


class Withdrawn(Exception):
    """The caller's `gate` said no after the server accepted the recipient: the
    transaction was reset before DATA, so the server has nothing of the message."""


class Signed:
    """A message signed ahead of its turn (`SmtpTransport.sign_ahead`): the bytes to
    send, or the error its signing (or composing) raised, raised again when it is
    sent, exactly where signing it then would have raised it."""

    __slots__ = ("error", "raw")

    def __init__(self, raw: bytes, error: Exception | None = None) -> None:
        self.raw = raw
        self.error = error

    def result(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.raw


class SmtpTransport:
    """A lazily opened, reused SMTP connection. Use as a context manager.

    `signer`, when given, turns each raw message into the raw message to send
    (DKIM: service/deliverability/dkim.py). It runs here, at the last moment,
    so every mail the workers send is signed whoever composed it, and the
    signature's timestamp is the sending time, not the composing time.
    `kind` names what it sends in the metrics (issue, confirmation…).
    """

    def __init__(
        self,
        settings: SmtpSettings,
        capability_store: Redis | None = None,
        signer: Callable[[bytes], bytes] | None = None,
        kind: str = "other",
    ) -> None:
        self.settings = settings
        self.capability_store = capability_store
        self.signer = signer
        self.kind = kind
        self._connection: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        s = self.settings
        connection: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                connection = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            connection.ehlo()
            if s.security == "starttls":
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if s.username:
                connection.login(s.username, s.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # Wrong credentials are an operator's problem, not the recipient's:
            # keep the mail queued and retry rather than fail it for good.
            _close_quietly(connection)
            raise self._unavailable(f"SMTP login refused: {exc.smtp_code}") from exc
        except UnicodeEncodeError as exc:
            # smtplib sends the user name and password as ASCII only: one with
            # diacritics cannot be sent at all. The operator's to fix, as above.
            _close_quietly(connection)
            raise self._unavailable(
                f"SMTP login impossible: the user name and password must be ASCII ({exc})"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(connection)
            raise self._unavailable(f"cannot connect to {s.host}:{s.port}: {exc}") from exc
        self._connection = connection
        self._report_capabilities(connection)
        return connection

    def _report_capabilities(self, connection: smtplib.SMTP) -> None:
        """Tell the web process whether the server takes SMTPUTF8 (see addresses.py), and
        that it answered (`/readyz`, service/worker_status.py)."""
        if self.capability_store is None:
            return
        # A capability note is not worth failing a send.
        with contextlib.suppress(Exception):
            self.capability_store.set(
                SMTPUTF8_CAPABILITY_KEY, "1" if connection.has_extn("smtputf8") else "0"
            )
            worker_status.record_smtp(self.capability_store, None)

    def _unavailable(self, reason: str) -> ServerUnavailable:
        """The error for a connection that failed, recorded for `/readyz` on the way."""
        if self.capability_store is not None:
            with contextlib.suppress(Exception):
                worker_status.record_smtp(self.capability_store, reason)
        return ServerUnavailable(reason)

    def sign_ahead(self, raw: bytes) -> Signed:
        """Sign `raw` now for a later `send` (while the server digests the message before
        it: see `send`'s `meanwhile`); a signing error is kept for that send to raise."""
        try:
            return Signed(self._sign(raw))
        except Exception as exc:
            return Signed(raw, exc)

    def send(
        self,
        sender: str,
        recipient: str,
        raw: bytes | Signed,
        *,
        smtputf8: bool = False,
        gate: Callable[[], bool] | None = None,
        meanwhile: Callable[[Callable[[], bool]], None] | None = None,
    ) -> None:
        """Send one message; raise PermanentFailure or TransientFailure when it is refused.

        `raw` is signed here, unless it comes `Signed` already (`sign_ahead`).
        `meanwhile`, when given, runs once the whole message and its final dot
        are written and before the server's answer to them is read: the server
        is busy with the message then, and the caller can prepare the next one
        (it must not raise, and must not touch what the answer decides). It is
        given a function that says whether the answer has arrived, so it can
        stop early rather than hold up the answer. It is not run when the
        exchange fails before the dot.

        `gate`, when given, is asked once the server has accepted the envelope
        (MAIL FROM and RCPT TO) and before DATA: if it says no, the transaction
        is reset (RSET) and Withdrawn raised, the server holding nothing of the
        message. The delivery engine's claim of the message runs on the database
        meanwhile, and the gate waits for it (workers/delivery.py). The gate is
        not asked when the exchange fails before that point.

        Counted as sent, failed or deferred by kind, with the time of the SMTP
        exchange (signing not included; `meanwhile`'s time is, when it outlasts
        the server's, as the answer is read only after it): service/metrics.py.
        """
        started = None
        try:
            if isinstance(raw, Signed):
                raw = raw.result()
            elif self.signer is not None:
                raw = self._sign(raw)
            started = time.perf_counter()
            self._exchange(sender, recipient, raw, smtputf8, gate, meanwhile)
        except PermanentFailure:
            metrics.mail_result(self.kind, "failed", _since(started))
            raise
        except TransientFailure:
            metrics.mail_result(self.kind, "deferred", _since(started))
            raise
        metrics.mail_result(self.kind, "sent", _since(started))

    def _exchange(
        self,
        sender: str,
        recipient: str,
        raw: bytes,
        smtputf8: bool,
        gate: Callable[[], bool] | None = None,
        meanwhile: Callable[[Callable[[], bool]], None] | None = None,
    ) -> None:
        connection = self.connect()
        options = []
        if smtputf8:
            if not connection.has_extn("smtputf8"):
                raise PermanentFailure("the SMTP server does not support SMTPUTF8")
            options.append("SMTPUTF8")
            if connection.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
        try:
            refused = _sendmail(
                connection,
                sender,
                recipient,
                raw,
                options,
                self.settings.data_timeout,
                gate,
                meanwhile,
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, message = next(iter(exc.recipients.values()))
            raise _classify(code, message, recipient=True) from exc
        except smtplib.SMTPSenderRefused as exc:
            # MAIL FROM refused (authentication, sender not allowed, quota): the
            # relay refuses us, not this recipient. Stop and retry later rather
            # than fail every recipient of an issue in a minute.
            self._drop_after(exc)
            raise ServerUnavailable(f"sender refused: {exc.smtp_code} {exc.smtp_error!r}") from exc
        except smtplib.SMTPResponseException as exc:
            self._drop_after(exc)
            raise _classify(exc.smtp_code, exc.smtp_error) from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise ServerUnavailable(f"connection lost: {exc}") from exc
        if refused:  # only possible with several recipients; kept for safety
            code, message = next(iter(refused.values()))
            raise _classify(code, message)

    def _sign(self, raw: bytes) -> bytes:
        if self.signer is None:
            return raw
        try:
            return self.signer(raw)
        except DkimKeyError as exc:
            # The key is the operator's to fix; no mail may go out unsigned
            # meanwhile, so hold everything back and retry, as with a dead server.
            raise ServerUnavailable(f"DKIM signing impossible: {exc}") from exc
        except DkimError as exc:
            # Only this message is malformed: fail it, let the others go.
            raise PermanentFailure(f"DKIM signing failed: {exc}") from exc

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._connection.quit()
            self._connection = None

    def _drop_after(self, exc: smtplib.SMTPResponseException) -> None:
        # After a refused MAIL/DATA the session is still usable; reset it.
        if self._connection is None:
            return
        try:
            self._connection.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
        self._connection = None


def _since(started: float | None) -> float | None:
    return None if started is None else time.perf_counter() - started


def _sendmail(
    connection: smtplib.SMTP,
    sender: str,
    recipient: str,
    raw: bytes,
    options: list[str],
    data_timeout: float,
    gate: Callable[[], bool] | None = None,
    meanwhile: Callable[[Callable[[], bool]], None] | None = None,
) -> dict:
    """`smtplib.SMTP.sendmail` for one recipient whose addresses need no parsing.

    sendmail runs both addresses through `email.utils.parseaddr` (in
    `quoteaddr`), half of its cost; ours are bare addresses the service built
    or validated, so they are only wrapped in angle brackets here. The replies
    are checked and the same exceptions raised as sendmail's.

    `gate` (see SmtpTransport.send) is asked between RCPT TO and DATA: the last
    point at which RSET still cancels the transaction cleanly (after DATA's 354
    only a dropped connection would, and a server may take a message whose
    connection dropped late). Addresses smtplib must parse ask it before MAIL.
    """
    if _NEEDS_PARSING.search(sender) or _NEEDS_PARSING.search(recipient):
        if gate is not None and not gate():
            raise Withdrawn("withdrawn before the envelope was sent")
        return connection.sendmail(sender, [recipient], raw, mail_options=options)
    connection.ehlo_or_helo_if_needed()
    esmtp = [f"size={len(raw)}"] if connection.has_extn("size") else []
    if "SMTPUTF8" in options:
        connection.command_encoding = "utf-8"
    optionlist = " " + " ".join(esmtp + options) if esmtp or options else ""
    connection.putcmd("mail", f"FROM:<{sender}>{optionlist}")
    code, reply = connection.getreply()
    if code != 250:
        if code == 421:
            connection.close()
        else:
            _reset_quietly(connection)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    connection.putcmd("rcpt", f"TO:<{recipient}>")
    code, reply = connection.getreply()
    if code not in (250, 251):
        if code == 421:
            connection.close()
        else:
            _reset_quietly(connection)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    if gate is not None:
        _pass_gate(connection, gate)
    code, reply = _data(connection, raw, data_timeout, meanwhile)
    if code != 250:
        if code == 421:
            connection.close()
        else:
            _reset_quietly(connection)
        raise smtplib.SMTPDataError(code, reply)
    return {}


def _pass_gate(connection: smtplib.SMTP, gate: Callable[[], bool]) -> None:
    """Ask `gate` with the envelope accepted; unless it says yes, reset the transaction
    (the server then holds nothing of the message) and raise Withdrawn, or its error."""
    try:
        go_on = gate()
    except BaseException:
        _reset_quietly(connection)
        raise
    if not go_on:
        _reset_quietly(connection)
        raise Withdrawn("withdrawn after RCPT TO; the transaction was reset")


# An address smtplib's sendmail must parse (brackets) or refuse (line breaks).
_NEEDS_PARSING = re.compile(r"[<>\r\n]")


class NoAnswerToMessage(smtplib.SMTPServerDisconnected):
    """The whole message went out and the server never answered: it may have it."""


def _data(
    connection: smtplib.SMTP,
    raw: bytes,
    timeout: float,
    meanwhile: Callable[[Callable[[], bool]], None] | None = None,
) -> tuple[int, bytes]:
    """`smtplib.SMTP.data`, except that the answer to the final dot is waited for
    `timeout` seconds (SMTP_DATA_TIMEOUT) instead of the commands' SMTP_TIMEOUT, and
    that `meanwhile` (SmtpTransport.send) runs between the dot and that answer."""
    connection.putcmd("data")
    code, reply = connection.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    quoted = dot_stuffed(raw)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    connection.send(quoted + b".\r\n")
    sock = connection.sock
    if meanwhile is not None and sock is not None:
        meanwhile(lambda: _readable(sock))
    if sock is None:  # closed by a failed send, which smtplib has raised already
        raise smtplib.SMTPServerDisconnected("connection lost while sending the message")
    command_timeout = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        answer = connection.getreply()
    except smtplib.SMTPServerDisconnected as exc:
        raise NoAnswerToMessage(
            f"no answer to the whole message within {timeout:g} s ({exc});"
            " it may have arrived and is sent again"
        ) from exc
    if connection.sock is not None:
        connection.sock.settimeout(command_timeout)
    return answer


def _readable(sock: socket.socket) -> bool:
    """Whether something (the server's answer) waits to be read, without waiting."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    return bool(select.select([sock], [], [], 0)[0])


def dot_stuffed(raw: bytes) -> bytes:
    """A dot doubled at the start of every line (RFC 5321 §4.5.2), byte for byte what
    smtplib's `re.sub(rb"(?m)^\\.", b"..", …)` does, at a fraction of the regex's cost
    on a 10 kB message (bench/README.md, Delivery)."""
    quoted = raw.replace(b"\n.", b"\n..")
    return b"." + quoted if quoted.startswith(b".") else quoted


def _reset_quietly(connection: smtplib.SMTP) -> None:
    """RSET after a refusal, ignoring a lost connection, as sendmail does."""
    # smtplib's own (private) helper for it, which typeshed's stubs leave out.
    connection._rset()  # type: ignore[attr-defined]


def _close_quietly(connection: smtplib.SMTP | None) -> None:
    """Free the socket of a session that failed while being set up (login refused…)."""
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.close()


def _classify(code: int, message: bytes | str, *, recipient: bool = False) -> Exception:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    reason = f"{code} {text}".strip()
    if code == 421:  # the server is closing the session: it is the server, not the recipient
        return ServerUnavailable(reason)
    if 500 <= code < 600:
        return RecipientRefused(reason) if recipient else PermanentFailure(reason)
    return TransientFailure(reason)
