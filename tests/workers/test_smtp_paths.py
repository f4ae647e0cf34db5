"""The worker's SMTP client against a real aiosmtpd server on loopback: TLS, login, faults.

No part of smtplib is mocked. Each test runs an issue (or a confirmation mail)
through a real RQ worker in burst mode and looks at what the server received
and what the database recorded.

The client builds its TLS context with `ssl.create_default_context()`, which
trusts what OpenSSL's default paths name; the tests make it trust their own
certificate authority the way an operator with a private CA would, through
the SSL_CERT_FILE environment variable.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select

from service.dev.mail_catcher import MailCatcher
from service.dev.processes import free_port
from service.extensions import db
from service.models import (
    Bounce,
    Delivery,
    DeliveryBatch,
    Issue,
    OutgoingMail,
    Subscriber,
    Subscription,
)
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.workers.test_delivery import counts, make_issue, send
from workers.reconcile import reconcile

USER = "zpravodaj@socialnibydleni.example"
PASSWORD = "p@ss:w/rd%+ 1"  # every character that must be percent-encoded in SMTP_URL
RETRIES = 2  # len(MAIL_RETRY_INTERVALS) in tests/conftest.py: each job runs 1 + 2 times


def smtp_url(scheme: str, port: int, user: str | None = None, password: str | None = None) -> str:
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    return f"{scheme}://{login}127.0.0.1:{port}"


def addresses(count: int) -> list[str]:
    return [f"odberatel{n}@example.cz" for n in range(count)]


# --- certificates -------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca_file: Path  # what the client is told to trust
    cert_file: Path  # the server's certificate, for 127.0.0.1 and localhost, signed by the CA
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> Certificates:
    """A throwaway certificate authority and a server certificate it signed."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Zpravodaj test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    made = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    made.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    made.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    made.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return made


@pytest.fixture
def trusted(certificates, monkeypatch) -> Certificates:
    """The worker trusts the test CA (ssl.create_default_context() reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    return certificates


# --- a scriptable server ------------------------------------------------------

DROP = "drop"  # close the connection instead of answering DATA; the mail is not kept
KEEP_AND_DROP = "keep-and-drop"  # keep the mail, then close the connection without answering


class ScriptedSink(MailCatcher):
    """A MailCatcher that misbehaves on cue and notes what each connection did.

    `script[(command, address)]` lists the answers to that address's next RCPT or
    DATA commands, one per try: a reply such as "451 4.3.0 Try later", DROP or
    KEEP_AND_DROP. A 421 reply is followed by closing the connection, as a
    server that is shutting down does. Once the list is used up, the sink accepts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.script: dict[tuple[str, str], list[str]] = {}
        self.tries: Counter[tuple[str, str]] = Counter()
        self.connections = 0
        self.over_tls: list[bool] = []  # per kept mail
        self.logins: list[tuple[int, str, str, bool]] = []  # connection, user, password, TLS

    def connection_number(self, session) -> int:
        if not hasattr(session, "number"):
            self.connections += 1
            session.number = self.connections
        return session.number

    async def _scripted(self, command: str, server, session, address: str) -> str | None:
        self.connection_number(session)
        self.tries[command, address] += 1
        steps = self.script.get((command, address))
        if not steps:
            return None
        step = steps.pop(0)
        if step in (DROP, KEEP_AND_DROP):
            server.transport.close()
            return "250 (never heard: the connection is closed)"
        if step.startswith("421"):
            await server.push(step)
            server.transport.close()
        return step

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = await self._scripted("RCPT", server, session, address)
        if answer is not None:
            return answer
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        [address] = envelope.rcpt_tos
        steps = self.script.get(("DATA", address))
        if steps and steps[0] == KEEP_AND_DROP:
            await self._keep(server, session, envelope)
        answer = await self._scripted("DATA", server, session, address)
        if answer is not None:
            return answer
        return await self._keep(server, session, envelope)

    async def _keep(self, server, session, envelope) -> str:
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.over_tls.append(tls)
        return await super().handle_DATA(server, session, envelope)

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        """aiosmtpd's authenticator: takes USER with PASSWORD only, and notes every try."""
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((self.connection_number(session), user, password, bool(session.ssl)))
        # handled=False: aiosmtpd answers a failure itself (535 5.7.8).
        return AuthResult(success=(user, password) == (USER, PASSWORD), handled=False)

    def received(self, address: str) -> int:
        return sum(address in mail.rcpt_tos for mail in self.mails)


@contextlib.contextmanager
def serving(sink: ScriptedSink, **options) -> Iterator[int]:
    """Run `sink` on a free loopback port for the block; yields the port."""
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port("127.0.0.1"),
        enable_SMTPUTF8=True,
        decode_data=False,
        ready_timeout=10,
        **options,
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def sink() -> ScriptedSink:
    return ScriptedSink()


@pytest.fixture
def plain_server(app, sink) -> Iterator[ScriptedSink]:
    """The scripted sink as the app's plain SMTP server."""
    with serving(sink) as port:
        app.config["SMTP_URL"] = smtp_url("smtp", port)
        yield sink


@pytest.fixture
def starttls_server(app, sink, certificates) -> Iterator[int]:
    """A submission server: STARTTLS required, AUTH required and offered only under TLS."""
    with serving(
        sink,
        tls_context=certificates.server_context(),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=sink.authenticate,
    ) as port:
        yield port


# --- helpers ------------------------------------------------------------------


def delivery_of(address: str) -> Delivery:
    db.session.expire_all()
    return db.session.scalar(
        select(Delivery).join(Delivery.subscriber).where(Subscriber.email == address)
    )


def issue_status(issue: Issue) -> str:
    db.session.expire_all()
    return db.session.get(Issue, issue.id).status


def send_issue_to(count: int) -> Issue:
    add_confirmed_subscribers("zpravodaj", count)
    issue = make_issue()
    send(issue)
    return issue


def sign_up(client, email: str = "jana@seznam.cz") -> None:
    assert client.post("/subscribe", json={"email": email}).status_code == 202


def outgoing_mail() -> OutgoingMail:
    db.session.expire_all()
    return db.session.scalar(select(OutgoingMail))


# --- implicit TLS ---------------------------------------------------------------


def test_implicit_tls_delivers_an_issue_to_every_subscriber_once(app, sink, trusted):
    with serving(sink, ssl_context=trusted.server_context()) as port:
        app.config["SMTP_URL"] = smtp_url("smtps", port)
        issue = send_issue_to(4)
        run_jobs(app)
    assert sorted(r for m in sink.mails for r in m.rcpt_tos) == addresses(4)
    assert sink.over_tls == [True] * 4
    assert sink.connections == 1  # one connection serves the whole batch
    assert counts(issue)["sent"] == 4
    assert issue_status(issue) == "sent"


def test_implicit_tls_with_an_untrusted_certificate_sends_nothing_and_loses_nothing(
    app, sink, certificates, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the test CA is nowhere trusted
    with serving(sink, ssl_context=certificates.server_context()) as port:
        app.config["SMTP_URL"] = smtp_url("smtps", port)
        issue = send_issue_to(3)
        run_jobs(app)  # the first try and both retries fail the handshake
        assert sink.mails == []
        assert counts(issue)["pending"] == 3
        assert "CERTIFICATE_VERIFY_FAILED" in delivery_of("odberatel0@example.cz").last_error
        assert issue_status(issue) == "sending"

        monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))  # the operator fixes it
        reconcile()
        run_jobs(app)
    assert sorted(r for m in sink.mails for r in m.rcpt_tos) == addresses(3)
    assert issue_status(issue) == "sent"


def test_implicit_tls_sends_a_confirmation_mail(app, client, sink, trusted):
    with serving(sink, ssl_context=trusted.server_context()) as port:
        app.config["SMTP_URL"] = smtp_url("smtps", port)
        sign_up(client)
        run_jobs(app)
    assert [m.rcpt_tos for m in sink.mails] == [["jana@seznam.cz"]]
    assert sink.over_tls == [True]
    assert outgoing_mail().status == "sent"


# --- STARTTLS and AUTH ----------------------------------------------------------


def test_starttls_with_login_delivers_an_issue(app, sink, trusted, starttls_server):
    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, PASSWORD)
    issue = send_issue_to(4)
    run_jobs(app)
    assert sorted(r for m in sink.mails for r in m.rcpt_tos) == addresses(4)
    assert sink.over_tls == [True] * 4
    # One login, after STARTTLS, with the password decoded from the URL.
    assert sink.logins == [(1, USER, PASSWORD, True)]
    assert counts(issue)["sent"] == 4
    assert issue_status(issue) == "sent"


def test_starttls_with_login_sends_a_confirmation_mail(app, client, sink, trusted, starttls_server):
    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, PASSWORD)
    sign_up(client)
    run_jobs(app)
    assert [m.rcpt_tos for m in sink.mails] == [["jana@seznam.cz"]]
    assert sink.logins == [(1, USER, PASSWORD, True)]
    assert outgoing_mail().status == "sent"


def test_wrong_password_keeps_the_issue_waiting_and_fails_no_recipient(
    app, sink, trusted, starttls_server
):
    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, "spatne-heslo")
    issue = send_issue_to(3)
    run_jobs(app)

    # The first try and RQ's retries each connected and were refused at login.
    assert {number for number, *_ in sink.logins} == set(range(1, 2 + RETRIES))
    assert all(password == "spatne-heslo" for _, _, password, _ in sink.logins)
    assert sink.mails == []
    assert counts(issue) | {"total": 3} == {
        "total": 3, "sent": 0, "failed": 0, "pending": 3, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    row = delivery_of("odberatel0@example.cz")
    assert row.attempts == 0  # a login refusal is not the recipient's refusal
    assert row.last_error.startswith("SMTP login refused: 535")
    batch = db.session.scalar(select(DeliveryBatch))
    assert (batch.status, batch.owner) == ("queued", None)
    assert batch.last_error.startswith("SMTP login refused: 535")
    assert db.session.scalar(select(func.count()).select_from(Bounce)) == 0
    assert set(db.session.scalars(select(Subscription.status))) == {"confirmed"}
    assert issue_status(issue) == "sending"

    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, PASSWORD)
    reconcile()
    run_jobs(app)
    assert sorted(r for m in sink.mails for r in m.rcpt_tos) == addresses(3)
    assert counts(issue)["sent"] == 3
    assert issue_status(issue) == "sent"


def test_password_with_diacritics_is_reported_and_keeps_the_issue_waiting(
    app, sink, trusted, starttls_server
):
    """smtplib sends credentials as ASCII only: the failure must say so, not vanish."""
    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, "žluťoučký kůň")
    issue = send_issue_to(2)
    run_jobs(app)

    assert sink.logins == []  # nothing could even be sent
    assert sink.mails == []
    assert counts(issue)["pending"] == 2
    row = delivery_of("odberatel0@example.cz")
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.last_error.startswith("SMTP login impossible: the user name and password must be")
    batch = db.session.scalar(select(DeliveryBatch))
    assert (batch.status, batch.owner) == ("queued", None)
    assert batch.last_error == row.last_error
    assert issue_status(issue) == "sending"

    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, PASSWORD)
    reconcile()
    run_jobs(app)
    assert sorted(r for m in sink.mails for r in m.rcpt_tos) == addresses(2)
    assert issue_status(issue) == "sent"


def test_wrong_password_keeps_a_confirmation_mail_queued(
    app, client, sink, trusted, starttls_server
):
    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, "spatne-heslo")
    sign_up(client)
    run_jobs(app)
    row = outgoing_mail()
    assert (row.status, row.attempts) == ("queued", 1 + RETRIES)
    assert row.last_error.startswith("SMTP login refused: 535")
    assert sink.mails == []

    app.config["SMTP_URL"] = smtp_url("smtp+starttls", starttls_server, USER, PASSWORD)
    assert reconcile()["outgoing_mail"] == 1
    run_jobs(app)
    assert outgoing_mail().status == "sent"
    assert [m.rcpt_tos for m in sink.mails] == [["jana@seznam.cz"]]


# --- refusals at DATA -----------------------------------------------------------


def test_permanent_refusal_at_data_fails_that_recipient_only(app, plain_server):
    plain_server.script["DATA", "odberatel1@example.cz"] = ["554 5.6.0 Message content rejected"]
    issue = send_issue_to(4)
    run_jobs(app)

    assert plain_server.tries["DATA", "odberatel1@example.cz"] == 1  # not retried
    assert plain_server.received("odberatel1@example.cz") == 0
    assert sorted(r for m in plain_server.mails for r in m.rcpt_tos) == [
        "odberatel0@example.cz", "odberatel2@example.cz", "odberatel3@example.cz"
    ]  # fmt: skip
    assert plain_server.connections == 1  # the session went on after the refusal
    refused = delivery_of("odberatel1@example.cz")
    assert refused.status == "failed"
    assert refused.last_error == "554 5.6.0 Message content rejected"
    assert counts(issue) | {"total": 4} == {
        "total": 4, "sent": 3, "failed": 1, "pending": 0, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    # Refused content says nothing about the address: no bounce, still subscribed.
    assert db.session.scalar(select(func.count()).select_from(Bounce)) == 0
    assert set(db.session.scalars(select(Subscription.status))) == {"confirmed"}
    assert issue_status(issue) == "sent"


def test_permanent_refusal_at_data_fails_a_confirmation_mail_for_good(app, client, outbox):
    outbox.catcher.reject_data = (550, "5.7.1 Message refused by policy")
    sign_up(client)
    run_jobs(app)
    row = outgoing_mail()
    assert (row.status, row.attempts) == ("failed", 1)  # no retry of a 5xx
    assert row.last_error == "550 5.7.1 Message refused by policy"
    assert outbox.mails == []
    assert reconcile()["outgoing_mail"] == 0


def test_temporary_refusal_at_data_is_retried_and_delivered_once(app, plain_server):
    plain_server.script["DATA", "odberatel2@example.cz"] = ["451 4.3.0 Try again later"]
    issue = send_issue_to(4)
    run_jobs(app)  # the batch defers odberatel2, RQ's retry runs it again

    assert plain_server.tries["DATA", "odberatel2@example.cz"] == 2
    assert Counter(r for m in plain_server.mails for r in m.rcpt_tos) == dict.fromkeys(
        addresses(4), 1
    )
    row = delivery_of("odberatel2@example.cz")
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert counts(issue)["sent"] == 4
    assert issue_status(issue) == "sent"


def test_temporary_refusal_at_data_keeps_a_confirmation_mail_queued(app, client, outbox):
    outbox.catcher.reject_data = (452, "4.3.1 Insufficient system storage")
    sign_up(client)
    run_jobs(app)
    row = outgoing_mail()
    assert (row.status, row.attempts) == ("queued", 1 + RETRIES)
    assert row.last_error == "452 4.3.1 Insufficient system storage"

    outbox.catcher.reject_data = None
    assert reconcile()["outgoing_mail"] == 1
    run_jobs(app)
    assert outgoing_mail().status == "sent"
    assert [m.rcpt_tos for m in outbox.mails] == [["jana@seznam.cz"]]


# --- the server going away mid-batch ---------------------------------------------


@pytest.mark.parametrize("command", ["RCPT", "DATA"])
def test_421_mid_batch_resumes_and_everyone_gets_one_mail(app, plain_server, command):
    plain_server.script[command, "odberatel2@example.cz"] = ["421 4.3.2 Service shutting down"]
    issue = send_issue_to(5)
    run_jobs(app)

    assert plain_server.connections == 2  # the batch came back on a new connection
    assert plain_server.tries[command, "odberatel2@example.cz"] == 2
    assert Counter(r for m in plain_server.mails for r in m.rcpt_tos) == dict.fromkeys(
        addresses(5), 1
    )
    # The server, not the recipient, said no: nobody's attempts count it.
    assert db.session.scalars(select(Delivery.attempts)).all() == [0] * 5
    assert counts(issue)["sent"] == 5
    assert db.session.scalar(select(func.count()).select_from(Bounce)) == 0
    assert issue_status(issue) == "sent"


def test_connection_dropped_during_data_loses_nothing(app, plain_server):
    """The server reads the message and closes without an answer; it kept nothing."""
    plain_server.script["DATA", "odberatel2@example.cz"] = [DROP]
    issue = send_issue_to(5)
    run_jobs(app)

    assert plain_server.connections == 2
    assert Counter(r for m in plain_server.mails for r in m.rcpt_tos) == dict.fromkeys(
        addresses(5), 1
    )
    assert db.session.scalars(select(Delivery.attempts)).all() == [0] * 5
    assert counts(issue)["sent"] == 5
    assert issue_status(issue) == "sent"


def test_connection_dropped_after_the_server_kept_the_message_duplicates_only_that_one(
    app, plain_server
):
    """The server kept the message but the answer never came: the client cannot know,
    so that one message goes again (DESIGN: at most the message in flight twice)."""
    plain_server.script["DATA", "odberatel2@example.cz"] = [KEEP_AND_DROP]
    issue = send_issue_to(5)
    run_jobs(app)

    received = Counter(r for m in plain_server.mails for r in m.rcpt_tos)
    assert received == dict.fromkeys(addresses(5), 1) | {"odberatel2@example.cz": 2}
    assert counts(issue)["sent"] == 5
    assert issue_status(issue) == "sent"
