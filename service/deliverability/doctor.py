"""`zpravodaj doctor`: is this installation set up so its mail arrives? Sends nothing.

Each check is a small function returning `Result`s, so tests can call them one
by one with their own configuration, SMTP server and DNS resolver. What the
checks look at, and why:

- SMTP: the relay answers EHLO, the TLS and login in SMTP_URL work, and which
  extensions it offers (SMTPUTF8 decides whether addresses with diacritics are
  accepted at the form; SIZE bounds announcements with attachments). It never
  says MAIL FROM: nothing is queued.
- DKIM: the key loads and signs, its public half is what DNS publishes, and
  the signing domain aligns with From (DMARC passes through DKIM only then).
- SPF: the envelope sender (bounce address) domain has one SPF record, and
  aligns with From (DMARC passes through SPF only then).
- DMARC: a record exists (Gmail and Yahoo require one of bulk senders).
- BASE_URL is https (one-click unsubscribe URLs must be), the secrets are not
  guessable, the database and Redis answer.

DNS checks are skipped, each with a note, when no working resolver is reachable
(an offline machine, a sandbox): "skip" is not "ok", look those up by hand.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from ..extensions import db
from ..jobs import redis_connection
from ..smtp_settings import SmtpSettings
from .dkim import (
    DkimError,
    DkimSigner,
    ascii_domain,
    load_private_key,
    parse_record,
    public_key_b64,
    record_name,
    record_value,
    zone_line,
)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
PLACEHOLDER_DOMAINS = frozenset({"localhost", "localhost.localdomain"})
WEAK_SECRETS = frozenset(
    {"dev", "test", "secret", "changeme", "change-me", "password", "heslo", "zpravodaj", "bench"}
)
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Result:
    name: str
    status: str  # OK, WARN, FAIL or SKIP
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<16} {self.detail}"


class DnsUnavailable(Exception):
    """No DNS resolver answers from here: DNS checks cannot say anything."""


# A resolver takes a name and returns its TXT records, each one's strings joined;
# [] when the name or its TXT records do not exist; DnsUnavailable when DNS is out of reach.
Resolver = Callable[[str], list[str]]


def dns_resolver(timeout: float, nameservers: list[str] | None = None, port: int = 53) -> Resolver:
    """A dnspython TXT resolver that gives up for good after the first sign of no DNS.

    Before the first lookup it asks for the root zone's NS records, which
    always exist: a resolver that cannot answer that (offline, or a sandbox
    answering NXDOMAIN to everything) would make every record look missing.
    """
    # dnspython is imported by the doctor's run alone: the CLI that registers this
    # command is loaded by every web and worker process, which never resolve DNS.
    import dns.exception
    import dns.resolver

    state: dict[str, Any] = {}

    def unavailable(reason: str) -> DnsUnavailable:
        state["down"] = reason
        return DnsUnavailable(reason)

    def resolver() -> dns.resolver.Resolver:
        if "down" in state:
            raise DnsUnavailable(state["down"])
        if "resolver" not in state:
            try:
                made = dns.resolver.Resolver(configure=not nameservers)
            except (dns.exception.DNSException, OSError) as exc:
                raise unavailable(f"no resolver configured ({exc})") from exc
            made.lifetime = timeout
            if nameservers:
                made.nameservers, made.port = nameservers, port
            try:
                made.resolve(".", "NS")
            except (dns.exception.DNSException, OSError) as exc:
                raise unavailable(
                    f"the resolver cannot even look up the root zone ({type(exc).__name__})"
                ) from exc
            state["resolver"] = made
        return state["resolver"]

    def resolve(name: str) -> list[str]:
        try:
            answer = resolver().resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise unavailable(f"lookup of {name} failed ({type(exc).__name__})") from exc
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]

    return resolve


# --- domains --------------------------------------------------------------------


def domain_of(address: str) -> str:
    """The A-label domain of an address (or of `Name <address>`), "" when there is none."""
    domain = parseaddr(address)[1].rpartition("@")[2].strip().rstrip(".").lower()
    if not domain:
        return ""
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment, simplified: the same domain, or one a subdomain of the other.

    (DMARC compares organisational domains via the public suffix list; for one
    organisation's own domains this is what it comes down to.)
    """
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def envelope_address(config: Mapping[str, Any]) -> str:
    """Where bounces go (the SMTP envelope sender): BOUNCE_ADDRESS or bounces@<From domain>."""
    configured = (config.get("BOUNCE_ADDRESS") or "").strip()
    if configured:
        return parseaddr(configured)[1] or configured
    return f"bounces@{domain_of(config.get('MAIL_FROM') or '')}"


def dkim_configured(config: Mapping[str, Any]) -> bool:
    return all(
        config.get(name) for name in ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_PATH")
    )


# --- checks without the network -------------------------------------------------


def check_base_url(config: Mapping[str, Any]) -> list[Result]:
    url = config.get("BASE_URL") or ""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return [Result("base-url", OK, f"{url} is https")]
    if parts.scheme not in {"http", "https"} or not host:
        return [Result("base-url", FAIL, f"BASE_URL={url!r} is not an http(s) URL")]
    if host in LOCAL_HOSTS:
        return [
            Result(
                "base-url",
                WARN,
                f"{url}: links in mail point to this machine; fine for trying it out, "
                "set the public https URL for real mail",
            )
        ]
    return [
        Result(
            "base-url",
            FAIL,
            f"{url} is not https: links and one-click unsubscribe (Gmail requires "
            "https there) go out unencrypted; put the service behind TLS and set https://…",
        )
    ]


def check_embed_origins(config: Mapping[str, Any]) -> list[Result]:
    """Without EMBED_ORIGINS no website can frame the form or post to it from its pages."""
    origins = config.get("EMBED_ORIGINS") or []
    if not origins:
        return [
            Result(
                "embed-origins",
                WARN,
                "EMBED_ORIGINS is empty: no website may frame the sign-up form or post to it "
                "from its pages (the browser blocks both); set the website's origins, e.g. "
                "EMBED_ORIGINS=https://www.socialnibydleni.cz,https://socialnibydleni.cz",
            )
        ]
    odd = [o for o in origins if urlsplit(o).path not in {"", None} or "://" not in o]
    if odd:
        return [
            Result(
                "embed-origins",
                WARN,
                f"{', '.join(odd)}: an origin is scheme://host[:port] with no path, "
                "or browsers never match it",
            )
        ]
    return [Result("embed-origins", OK, ", ".join(origins))]


def _weakness(value: str) -> str | None:
    if value.strip().lower() in WEAK_SECRETS:
        return "a well-known placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"only {len(value)} characters (use at least {MIN_SECRET_LENGTH})"
    if len(set(value)) < 10:
        return "too few different characters"
    return None


NEW_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def check_secrets(config: Mapping[str, Any]) -> list[Result]:
    results = []
    secret = config.get("SECRET_KEY") or ""
    if not secret:
        results.append(Result("secret-key", FAIL, "SECRET_KEY is not set"))
    elif weakness := _weakness(secret):
        results.append(
            Result(
                "secret-key",
                FAIL,
                f"SECRET_KEY is {weakness}: anyone who guesses it can forge unsubscribe and "
                f"preferences links; make one with {NEW_SECRET} (old one into "
                "SECRET_KEY_FALLBACKS)",
            )
        )
    else:
        results.append(Result("secret-key", OK, "SECRET_KEY is set and long enough"))

    suppression = config.get("SUPPRESSION_KEY") or ""
    if not suppression:
        results.append(
            Result(
                "suppression-key",
                WARN,
                "SUPPRESSION_KEY is not set: the suppression list is keyed by SECRET_KEY, so "
                "rotating that would let erased and bounced addresses be imported again",
            )
        )
    elif weakness := _weakness(suppression):
        results.append(
            Result(
                "suppression-key",
                FAIL,
                f"SUPPRESSION_KEY is {weakness}: the hashed addresses of erased people "
                "could be tested against guesses",
            )
        )
    elif suppression == secret:
        results.append(
            Result(
                "suppression-key",
                WARN,
                "SUPPRESSION_KEY equals SECRET_KEY: give it its own value, so SECRET_KEY can be "
                "rotated",
            )
        )
    else:
        results.append(Result("suppression-key", OK, "SUPPRESSION_KEY is set, its own value"))
    return results


def check_sender(config: Mapping[str, Any]) -> list[Result]:
    from_domain = domain_of(config.get("MAIL_FROM") or "")
    if not from_domain or from_domain in PLACEHOLDER_DOMAINS or "." not in from_domain:
        return [
            Result(
                "mail-from",
                FAIL,
                f"MAIL_FROM={config.get('MAIL_FROM')!r} is not an address on the "
                "programme's domain; receivers reject mail from placeholder domains",
            )
        ]
    return [Result("mail-from", OK, f"From domain {from_domain}")]


def check_dkim_key(config: Mapping[str, Any]) -> list[Result]:
    """The key loads, is long enough, and what it signs verifies against its public half."""
    if not dkim_configured(config):
        return [
            Result(
                "dkim-key",
                WARN,
                "DKIM is off: receivers treat unsigned bulk mail as suspect and one-click "
                "unsubscribe needs it; run `zpravodaj dkim keygen` (README: Deliverability)",
            )
        ]
    path = config["DKIM_PRIVATE_KEY_PATH"]
    try:
        key = load_private_key(path)
        signer = DkimSigner(config["DKIM_DOMAIN"], config["DKIM_SELECTOR"], private_key=key)
        sample = (
            f"From: {config.get('MAIL_FROM') or 'x@' + signer.domain}\r\n"
            "To: doctor@example.invalid\r\nSubject: doctor\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nTest.\r\n"
        ).encode()
        signed = signer(sample)
    except DkimError as exc:
        return [Result("dkim-key", FAIL, str(exc))]
    import dkim as dkimpy  # imported when run (see dns_resolver): ~2.5 MB for every process

    record = record_value(key).encode("ascii")
    if not dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: record):
        return [Result("dkim-key", FAIL, f"a test signature with {path} does not verify")]
    status, note = OK, ""
    if key.key_size < 2048:
        status, note = WARN, " (use 2048 bits: `zpravodaj dkim keygen`)"
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & 0o077:
            status, note = WARN, f"; but others may read it: chmod 600 {path}"
    return [
        Result(
            "dkim-key",
            status,
            f"{key.key_size}-bit RSA key {path} signs, and the signature verifies{note}",
        )
    ]


def check_alignment(config: Mapping[str, Any]) -> list[Result]:
    """DMARC passes when SPF or DKIM passes for a domain aligned with From."""
    from_domain = domain_of(config.get("MAIL_FROM") or "")
    results = []
    dkim_ok = False
    if dkim_configured(config):
        try:
            dkim_domain = ascii_domain(config["DKIM_DOMAIN"])
        except DkimError as exc:
            dkim_domain, error = "", str(exc)
        else:
            error = ""
        dkim_ok = aligned(dkim_domain, from_domain)
        if dkim_ok:
            results.append(
                Result("dkim-alignment", OK, f"d={dkim_domain} aligns with From {from_domain}")
            )
        else:
            results.append(
                Result(
                    "dkim-alignment",
                    FAIL,
                    error
                    or f"DKIM_DOMAIN {dkim_domain} does not align with From {from_domain}: "
                    "DMARC ignores the signature; sign with the From domain (or its parent)",
                )
            )
    else:
        results.append(Result("dkim-alignment", SKIP, "DKIM is not configured"))

    envelope = envelope_address(config)
    envelope_domain = domain_of(envelope)
    if aligned(envelope_domain, from_domain):
        results.append(
            Result(
                "spf-alignment",
                OK,
                f"bounce address {envelope} aligns with From {from_domain}",
            )
        )
    else:
        results.append(
            Result(
                "spf-alignment",
                WARN if dkim_ok else FAIL,
                f"bounce address {envelope} does not align with From {from_domain}: SPF "
                "cannot make DMARC pass"
                + ("; the DKIM signature still can" if dkim_ok else ", and nor can DKIM"),
            )
        )
    return results


# --- checks over the network ----------------------------------------------------


def check_smtp(config: Mapping[str, Any], *, timeout: float | None = None) -> list[Result]:
    """Connect, EHLO, STARTTLS and login as SMTP_URL says, list extensions, QUIT.

    No MAIL FROM: the doctor never queues a message.
    """
    try:
        settings = SmtpSettings.from_url(config.get("SMTP_URL") or "")
    except ValueError as exc:
        return [Result("smtp", FAIL, f"SMTP_URL: {exc}")]
    seconds = timeout or min(float(config.get("SMTP_TIMEOUT") or 10), 10.0)
    where = f"{settings.host}:{settings.port}"
    results: list[Result] = []
    connection: smtplib.SMTP | None = None
    step = "connect"  # named in the failure: how far the conversation got
    try:
        context = ssl.create_default_context()
        connection = _connect(settings, seconds, context)
        step = "EHLO"
        code, _ = connection.ehlo()
        if code != 250:
            return [Result("smtp", FAIL, f"{where} answered EHLO with {code}")]
        offered_starttls = connection.has_extn("starttls")
        if settings.security == "starttls":
            step = "STARTTLS"
            connection.starttls(context=context)
            connection.ehlo()
        extensions = sorted(name.upper() for name in connection.esmtp_features)
        listed = ", ".join(extensions) or "none"
        results.append(
            Result("smtp", OK, f"{where} ({settings.security}) answers EHLO; extensions: {listed}")
        )
        results.extend(_tls_result(settings, offered_starttls))
        if settings.username:
            step = "login"
            connection.login(settings.username, settings.password or "")
            results.append(Result("smtp-login", OK, f"logged in as {settings.username}"))
        results.extend(_extension_results(connection, config))
    except smtplib.SMTPAuthenticationError as exc:
        results.append(
            Result("smtp-login", FAIL, f"login as {settings.username} refused: {exc.smtp_code}")
        )
    except (OSError, smtplib.SMTPException) as exc:
        results.append(_smtp_failure(exc, step, where, seconds))
    finally:
        if connection is not None:
            _quit(connection)
    return results


def _connect(settings: SmtpSettings, seconds: float, context: ssl.SSLContext) -> smtplib.SMTP:
    """The connection SMTP_URL asks for: TLS from the first byte, or plain (STARTTLS later)."""
    if settings.security == "tls":
        return smtplib.SMTP_SSL(settings.host, settings.port, timeout=seconds, context=context)
    return smtplib.SMTP(settings.host, settings.port, timeout=seconds)


def _smtp_failure(exc: Exception, step: str, where: str, seconds: float) -> Result:
    """What went wrong at `step` of the conversation, a timeout said as such."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, socket.timeout | TimeoutError):
        reason = f"no answer within {seconds:g} s"
    name = "smtp-login" if step == "login" else "smtp"
    return Result(name, FAIL, f"{step} to {where} failed: {reason}")


def _quit(connection: smtplib.SMTP) -> None:
    """QUIT politely; a server that already hung up is simply closed."""
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


def _tls_result(settings: SmtpSettings, offered_starttls: bool) -> list[Result]:
    if settings.security in {"tls", "starttls"}:
        return [Result("smtp-tls", OK, f"the connection is encrypted ({settings.security})")]
    if settings.host.lower() in LOCAL_HOSTS:
        return [Result("smtp-tls", OK, "plain SMTP to a relay on this machine")]
    if offered_starttls:
        return [
            Result(
                "smtp-tls",
                WARN,
                "the server offers STARTTLS but SMTP_URL is smtp://: use smtp+starttls:// "
                "so addresses and passwords do not cross the network in clear",
            )
        ]
    return [Result("smtp-tls", WARN, "plain SMTP over the network, without encryption")]


def _extension_results(connection: smtplib.SMTP, config: Mapping[str, Any]) -> list[Result]:
    results = []
    if connection.has_extn("smtputf8"):
        results.append(
            Result("smtp-smtputf8", OK, "SMTPUTF8: addresses with diacritics can be accepted")
        )
    else:
        results.append(
            Result(
                "smtp-smtputf8",
                WARN,
                "no SMTPUTF8: the form refuses addresses with diacritics before the @ "
                "(e.g. jiří@seznam.cz)",
            )
        )
    if connection.has_extn("8bitmime"):
        results.append(Result("smtp-8bitmime", OK, "8BITMIME offered"))
    else:
        results.append(Result("smtp-8bitmime", WARN, "no 8BITMIME: SMTPUTF8 mail needs it"))
    size = connection.esmtp_features.get("size", "").strip()
    # An announcement carries up to two attachments; base64 makes them a third larger.
    needed = int(2 * int(config.get("ATTACHMENT_MAX_BYTES") or 0) * 4 / 3) + 100_000
    if not size or size == "0":
        results.append(Result("smtp-size", OK, "no message size limit announced"))
    elif size.isdigit() and int(size) < needed:
        results.append(
            Result(
                "smtp-size",
                WARN,
                f"SIZE {int(size):,} bytes: an announcement with the largest attachments "
                f"(about {needed:,} bytes) would be refused; lower ATTACHMENT_MAX_BYTES",
            )
        )
    else:
        results.append(Result("smtp-size", OK, f"SIZE {size} bytes"))
    return results


def check_dkim_dns(config: Mapping[str, Any], resolve: Resolver) -> list[Result]:
    if not dkim_configured(config):
        return [Result("dkim-dns", SKIP, "DKIM is not configured")]
    try:
        name = record_name(config["DKIM_SELECTOR"], config["DKIM_DOMAIN"])
        key = load_private_key(config["DKIM_PRIVATE_KEY_PATH"])
    except DkimError as exc:
        return [Result("dkim-dns", SKIP, f"no usable key to compare: {exc}")]
    try:
        records = resolve(name)
    except DnsUnavailable as exc:
        return [Result("dkim-dns", SKIP, f"DNS not reachable ({exc}); check: dig TXT {name}")]
    keys = [parse_record(text) for text in records]
    keys = [tags for tags in keys if "p" in tags]
    publish = zone_line(config["DKIM_SELECTOR"], config["DKIM_DOMAIN"], key)
    if not keys:
        return [Result("dkim-dns", FAIL, f"no DKIM record at {name}; publish: {publish}")]
    if len(keys) > 1:
        return [Result("dkim-dns", FAIL, f"{len(keys)} DKIM records at {name}; keep one")]
    published = keys[0]
    if not published["p"]:
        return [Result("dkim-dns", FAIL, f"the key at {name} is revoked (empty p=)")]
    if published["p"] != public_key_b64(key):
        return [
            Result(
                "dkim-dns",
                FAIL,
                f"the key published at {name} is not the public half of "
                f"{config['DKIM_PRIVATE_KEY_PATH']}: every signature would fail; publish: "
                f"{publish}",
            )
        ]
    if published.get("t", "").find("y") >= 0:
        return [Result("dkim-dns", WARN, f"{name} matches but is in test mode (t=y)")]
    return [Result("dkim-dns", OK, f"{name} publishes the public half of the key")]


def check_spf(config: Mapping[str, Any], resolve: Resolver) -> list[Result]:
    domain = domain_of(envelope_address(config))
    if not domain or domain in PLACEHOLDER_DOMAINS:
        return [Result("spf", SKIP, "no real envelope domain (MAIL_FROM / BOUNCE_ADDRESS)")]
    try:
        records = [r for r in resolve(domain) if r.lower().startswith("v=spf1")]
    except DnsUnavailable as exc:
        return [Result("spf", SKIP, f"DNS not reachable ({exc}); check: dig TXT {domain}")]
    if not records:
        return [
            Result(
                "spf",
                FAIL,
                f"no SPF record at {domain} (the bounce address domain); publish e.g. "
                f'"v=spf1 include:<your relay\'s SPF> -all"',
            )
        ]
    if len(records) > 1:
        return [Result("spf", FAIL, f"{len(records)} SPF records at {domain}: a permerror")]
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return [Result("spf", FAIL, f"{domain}: {record!r} lets anyone send as the domain")]
    if "?all" in terms:
        return [Result("spf", WARN, f"{domain}: {record!r} ends in ?all (neutral)")]
    return [Result("spf", OK, f"{domain}: {record}")]


def check_dmarc(config: Mapping[str, Any], resolve: Resolver) -> list[Result]:
    from_domain = domain_of(config.get("MAIL_FROM") or "")
    if not from_domain or from_domain in PLACEHOLDER_DOMAINS:
        return [Result("dmarc", SKIP, "MAIL_FROM has no real domain")]
    # The From domain's own record, else its parent's (organisational domain, simplified).
    candidates = [from_domain]
    if from_domain.count(".") >= 2:
        candidates.append(from_domain.split(".", 1)[1])
    try:
        for domain in candidates:
            records = [r for r in resolve(f"_dmarc.{domain}") if r.startswith("v=DMARC1")]
            if records:
                break
    except DnsUnavailable as exc:
        return [
            Result("dmarc", SKIP, f"DNS not reachable ({exc}); check: dig TXT _dmarc.{from_domain}")
        ]
    if not records:
        return [
            Result(
                "dmarc",
                FAIL,
                f"no DMARC record at _dmarc.{from_domain}: Gmail and Yahoo refuse bulk mail "
                f'without one; publish at least "v=DMARC1; p=none; rua=mailto:dmarc@{from_domain}"',
            )
        ]
    record = records[0]
    tags = parse_record(record)
    return [Result("dmarc", OK, f"_dmarc.{domain}: {record} (policy {tags.get('p', '?')})")]


def check_database() -> list[Result]:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as exc:
        db.session.rollback()
        return [Result("database", FAIL, f"does not answer: {type(exc).__name__}: {exc}"[:300])]
    return [Result("database", OK, f"{db.engine.dialect.name} answers")]


def check_redis() -> list[Result]:
    try:
        redis_connection().ping()
    except Exception as exc:
        return [Result("redis", FAIL, f"does not answer: {type(exc).__name__}: {exc}"[:300])]
    return [Result("redis", OK, "answers")]


# --- all of them ----------------------------------------------------------------


def run_checks(
    config: Mapping[str, Any],
    *,
    resolve: Resolver | None = None,
    services: bool = True,
) -> list[Result]:
    """Every check, in the order an operator fixes things; `services` needs an app context."""
    if resolve is None:
        resolve = dns_resolver(float(config.get("DNS_TIMEOUT") or 5))
    results: list[Result] = []
    if services:
        results += check_database()
        results += check_redis()
    results += check_smtp(config)
    results += check_base_url(config)
    results += check_embed_origins(config)
    results += check_secrets(config)
    results += check_sender(config)
    results += check_dkim_key(config)
    results += check_alignment(config)
    results += check_dkim_dns(config, resolve)
    results += check_spf(config, resolve)
    results += check_dmarc(config, resolve)
    return results


def failed(results: Iterable[Result]) -> bool:
    return any(result.status == FAIL for result in results)
