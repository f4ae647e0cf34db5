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

from babel.numbers import format_decimal
from flask import has_app_context
from sqlalchemy import text

from ..cli_language import cli_language, ngettext
from ..cli_language import gettext as _
from ..extensions import db
from ..i18n import current_language
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
                raise unavailable(_("není nastaven žádný resolver (%(error)s)", error=exc)) from exc
            made.lifetime = timeout
            if nameservers:
                made.nameservers, made.port = nameservers, port
            try:
                made.resolve(".", "NS")
            except (dns.exception.DNSException, OSError) as exc:
                raise unavailable(
                    _("resolver nenajde ani kořenovou zónu (%(error)s)", error=type(exc).__name__)
                ) from exc
            state["resolver"] = made
        return state["resolver"]

    def resolve(name: str) -> list[str]:
        try:
            answer = resolver().resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise unavailable(
                _("dotaz na %(name)s selhal (%(error)s)", name=name, error=type(exc).__name__)
            ) from exc
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
        return [Result("base-url", OK, _("%(url)s je https", url=url))]
    if parts.scheme not in {"http", "https"} or not host:
        return [
            Result("base-url", FAIL, _("BASE_URL=%(value)s není adresa http(s)", value=repr(url)))
        ]
    if host in LOCAL_HOSTS:
        return [
            Result(
                "base-url",
                WARN,
                _(
                    "%(url)s: odkazy v e-mailech vedou na tento počítač; na vyzkoušení to stačí, "
                    "pro skutečnou poštu nastavte veřejnou adresu https",
                    url=url,
                ),
            )
        ]
    return [
        Result(
            "base-url",
            FAIL,
            _(
                "%(url)s není https: odkazy a odhlášení jedním kliknutím (Gmail tam https "
                "vyžaduje) jdou nešifrovaně; dejte službu za TLS a nastavte https://…",
                url=url,
            ),
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
                _(
                    "EMBED_ORIGINS je prázdné: žádný web nesmí vložit formulář pro přihlášení "
                    "do své stránky ani na něj ze svých stránek odesílat (prohlížeč obojí "
                    "zablokuje); nastavte originy webu, např. "
                    "EMBED_ORIGINS=https://www.socialnibydleni.cz,https://socialnibydleni.cz"
                ),
            )
        ]
    odd = [o for o in origins if urlsplit(o).path not in {"", None} or "://" not in o]
    if odd:
        return [
            Result(
                "embed-origins",
                WARN,
                _(
                    "%(origins)s: origin je scheme://host[:port] bez cesty, jinak mu prohlížeče "
                    "nikdy neodpovídají",
                    origins=", ".join(odd),
                ),
            )
        ]
    return [Result("embed-origins", OK, ", ".join(origins))]


def _weakness(value: str) -> str | None:
    if value.strip().lower() in WEAK_SECRETS:
        return _("známý zástupný text")
    if len(value) < MIN_SECRET_LENGTH:
        return ngettext(
            "jen %(num)d znak (použijte aspoň %(minimum)d)",
            "jen %(num)d znaků (použijte aspoň %(minimum)d)",
            len(value),
            minimum=MIN_SECRET_LENGTH,
        )
    if len(set(value)) < 10:
        return _("příliš málo různých znaků")
    return None


NEW_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def check_secrets(config: Mapping[str, Any]) -> list[Result]:
    secret = config.get("SECRET_KEY") or ""
    return [_secret_key(secret), _suppression_key(config.get("SUPPRESSION_KEY") or "", secret)]


def _secret_key(secret: str) -> Result:
    if not secret:
        return Result("secret-key", FAIL, _("SECRET_KEY není nastaven"))
    if weakness := _weakness(secret):
        forgeable = _(
            "SECRET_KEY: %(weakness)s; kdo ho uhodne, může padělat odkazy na odhlášení a na "
            "nastavení odběru; nový vytvoříte příkazem %(command)s (starý dejte do "
            "SECRET_KEY_FALLBACKS)",
            weakness=weakness,
            command=NEW_SECRET,
        )
        return Result("secret-key", FAIL, forgeable)
    return Result("secret-key", OK, _("SECRET_KEY je nastaven a dost dlouhý"))


def _suppression_key(suppression: str, secret: str) -> Result:
    if not suppression:
        unset = _(
            "SUPPRESSION_KEY není nastaven: seznam vyřazených adres je klíčovaný SECRET_KEY, "
            "takže jeho výměna by dovolila vymazané a nedoručitelné adresy znovu importovat"
        )
        return Result("suppression-key", WARN, unset)
    if weakness := _weakness(suppression):
        guessable = _(
            "SUPPRESSION_KEY: %(weakness)s; hašované adresy vymazaných lidí by šlo zkoušet "
            "proti odhadům",
            weakness=weakness,
        )
        return Result("suppression-key", FAIL, guessable)
    if suppression == secret:
        shared = _(
            "SUPPRESSION_KEY se rovná SECRET_KEY: dejte mu vlastní hodnotu, aby šlo SECRET_KEY "
            "vyměnit"
        )
        return Result("suppression-key", WARN, shared)
    return Result("suppression-key", OK, _("SUPPRESSION_KEY je nastaven, s vlastní hodnotou"))


def check_sender(config: Mapping[str, Any]) -> list[Result]:
    from_domain = domain_of(config.get("MAIL_FROM") or "")
    if not from_domain or from_domain in PLACEHOLDER_DOMAINS or "." not in from_domain:
        return [
            Result(
                "mail-from",
                FAIL,
                _(
                    "MAIL_FROM=%(value)s není adresa na doméně programu; příjemci odmítají "
                    "poštu ze zástupných domén",
                    value=repr(config.get("MAIL_FROM")),
                ),
            )
        ]
    return [Result("mail-from", OK, _("doména odesílatele (From) %(domain)s", domain=from_domain))]


def check_dkim_key(config: Mapping[str, Any]) -> list[Result]:
    """The key loads, is long enough, and what it signs verifies against its public half."""
    if not dkim_configured(config):
        return [
            Result(
                "dkim-key",
                WARN,
                _(
                    "DKIM je vypnutý: příjemci mají nepodepsanou hromadnou poštu za podezřelou "
                    "a odhlášení jedním kliknutím podpis potřebuje; spusťte `zpravodaj dkim "
                    "keygen` (README: Deliverability)"
                ),
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
        return [
            Result(
                "dkim-key", FAIL, _("zkušební podpis klíčem %(path)s neprojde ověřením", path=path)
            )
        ]
    status, note = OK, ""
    if key.key_size < 2048:
        status, note = WARN, _(" (použijte 2048 bitů: `zpravodaj dkim keygen`)")
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & 0o077:
            status, note = WARN, _("; ale mohou ho číst i jiní: chmod 600 %(path)s", path=path)
    return [
        Result(
            "dkim-key",
            status,
            _(
                "%(bits)d-bitový klíč RSA %(path)s podepisuje a podpis projde ověřením%(note)s",
                bits=key.key_size,
                path=path,
                note=note,
            ),
        )
    ]


def check_alignment(config: Mapping[str, Any]) -> list[Result]:
    """DMARC passes when SPF or DKIM passes for a domain aligned with From."""
    from_domain = domain_of(config.get("MAIL_FROM") or "")
    dkim = _dkim_alignment(config, from_domain)
    return [dkim, _spf_alignment(config, from_domain, dkim_ok=dkim.status == OK)]


def _dkim_alignment(config: Mapping[str, Any], from_domain: str) -> Result:
    if not dkim_configured(config):
        return Result("dkim-alignment", SKIP, _("DKIM není nastaven"))
    try:
        dkim_domain = ascii_domain(config["DKIM_DOMAIN"])
    except DkimError as exc:
        return Result("dkim-alignment", FAIL, str(exc))
    names = {"dkim_domain": dkim_domain, "from_domain": from_domain}
    if aligned(dkim_domain, from_domain):
        return Result(
            "dkim-alignment",
            OK,
            _("d=%(dkim_domain)s je v souladu s From %(from_domain)s", **names),
        )
    ignored = _(
        "DKIM_DOMAIN %(dkim_domain)s není v souladu s From %(from_domain)s: DMARC podpis nebere "
        "v úvahu; podepisujte doménou From (nebo její nadřazenou)",
        **names,
    )
    return Result("dkim-alignment", FAIL, ignored)


def _spf_alignment(config: Mapping[str, Any], from_domain: str, dkim_ok: bool) -> Result:
    envelope = envelope_address(config)
    names = {"envelope": envelope, "from_domain": from_domain}
    if aligned(domain_of(envelope), from_domain):
        return Result(
            "spf-alignment",
            OK,
            _("adresa pro nedoručenky %(envelope)s je v souladu s From %(from_domain)s", **names),
        )
    if dkim_ok:
        still = _(
            "adresa pro nedoručenky %(envelope)s není v souladu s From %(from_domain)s: SPF "
            "nemůže zajistit, že DMARC projde; podpis DKIM ještě může",
            **names,
        )
        return Result("spf-alignment", WARN, still)
    neither = _(
        "adresa pro nedoručenky %(envelope)s není v souladu s From %(from_domain)s: SPF nemůže "
        "zajistit, že DMARC projde, a DKIM také ne",
        **names,
    )
    return Result("spf-alignment", FAIL, neither)


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
        code = connection.ehlo()[0]
        if code != 250:
            refused = _("%(where)s odpověděl na EHLO kódem %(code)s", where=where, code=code)
            return [Result("smtp", FAIL, refused)]
        offered_starttls = connection.has_extn("starttls")
        if settings.security == "starttls":
            step = "STARTTLS"
            connection.starttls(context=context)
            connection.ehlo()
        extensions = sorted(name.upper() for name in connection.esmtp_features)
        listed = ", ".join(extensions) or _("žádná")
        answers = _(
            "%(where)s (%(security)s) odpovídá na EHLO; rozšíření: %(extensions)s",
            where=where,
            security=settings.security,
            extensions=listed,
        )
        results.append(Result("smtp", OK, answers))
        results.extend(_tls_result(settings, offered_starttls))
        if settings.username:
            step = "login"
            connection.login(settings.username, settings.password or "")
            logged_in = _("přihlášen jako %(user)s", user=settings.username)
            results.append(Result("smtp-login", OK, logged_in))
        results.extend(_extension_results(connection, config))
    except smtplib.SMTPAuthenticationError as exc:
        refused = _(
            "přihlášení jako %(user)s odmítnuto: %(code)s",
            user=settings.username,
            code=exc.smtp_code,
        )
        results.append(Result("smtp-login", FAIL, refused))
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
        reason = _("bez odpovědi do %(seconds)s s", seconds=f"{seconds:g}")
    if step == "login":
        said = _("přihlášení k %(where)s selhalo: %(reason)s", where=where, reason=reason)
        return Result("smtp-login", FAIL, said)
    if step == "connect":
        said = _("připojení k %(where)s selhalo: %(reason)s", where=where, reason=reason)
    else:  # EHLO, STARTTLS
        said = _("%(step)s u %(where)s selhalo: %(reason)s", step=step, where=where, reason=reason)
    return Result("smtp", FAIL, said)


def _quit(connection: smtplib.SMTP) -> None:
    """QUIT politely; a server that already hung up is simply closed."""
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


def _tls_result(settings: SmtpSettings, offered_starttls: bool) -> list[Result]:
    if settings.security in {"tls", "starttls"}:
        return [
            Result(
                "smtp-tls",
                OK,
                _("spojení je šifrované (%(security)s)", security=settings.security),
            )
        ]
    if settings.host.lower() in LOCAL_HOSTS:
        return [Result("smtp-tls", OK, _("nešifrované SMTP k relayi na tomto počítači"))]
    if offered_starttls:
        return [
            Result(
                "smtp-tls",
                WARN,
                _(
                    "server nabízí STARTTLS, ale SMTP_URL je smtp://: použijte smtp+starttls://, "
                    "ať adresy a hesla nejdou sítí nešifrovaně"
                ),
            )
        ]
    return [Result("smtp-tls", WARN, _("nešifrované SMTP přes síť"))]


def _extension_results(connection: smtplib.SMTP, config: Mapping[str, Any]) -> list[Result]:
    results = []
    if connection.has_extn("smtputf8"):
        results.append(
            Result("smtp-smtputf8", OK, _("SMTPUTF8: adresy s diakritikou lze přijmout"))
        )
    else:
        results.append(
            Result(
                "smtp-smtputf8",
                WARN,
                _(
                    "bez SMTPUTF8: formulář odmítne adresy s diakritikou před @ "
                    "(např. jiří@seznam.cz)"
                ),
            )
        )
    if connection.has_extn("8bitmime"):
        results.append(Result("smtp-8bitmime", OK, _("8BITMIME nabízeno")))
    else:
        results.append(
            Result("smtp-8bitmime", WARN, _("bez 8BITMIME: pošta se SMTPUTF8 ho potřebuje"))
        )
    size = connection.esmtp_features.get("size", "").strip()
    # An announcement carries up to two attachments; base64 makes them a third larger.
    needed = int(2 * int(config.get("ATTACHMENT_MAX_BYTES") or 0) * 4 / 3) + 100_000
    if not size or size == "0":
        results.append(Result("smtp-size", OK, _("server neohlašuje limit velikosti zprávy")))
    elif size.isdigit() and int(size) < needed:
        results.append(
            Result(
                "smtp-size",
                WARN,
                _(
                    "SIZE %(size)s bajtů: oznámení s největšími přílohami (asi %(needed)s bajtů) "
                    "by server odmítl; snižte ATTACHMENT_MAX_BYTES",
                    size=_number(int(size)),
                    needed=_number(needed),
                ),
            )
        )
    else:
        results.append(Result("smtp-size", OK, _("SIZE %(size)s bajtů", size=size)))
    return results


def _number(value: int) -> str:
    """A large number as the CLI's language writes it (10 000 000, 10,000,000)."""
    return format_decimal(value, locale=current_language() if has_app_context() else cli_language())


def check_dkim_dns(config: Mapping[str, Any], resolve: Resolver) -> list[Result]:
    if not dkim_configured(config):
        return [Result("dkim-dns", SKIP, _("DKIM není nastaven"))]
    try:
        name = record_name(config["DKIM_SELECTOR"], config["DKIM_DOMAIN"])
        key = load_private_key(config["DKIM_PRIVATE_KEY_PATH"])
    except DkimError as exc:
        return [
            Result("dkim-dns", SKIP, _("žádný použitelný klíč k porovnání: %(error)s", error=exc))
        ]
    try:
        records = resolve(name)
    except DnsUnavailable as exc:
        return [Result("dkim-dns", SKIP, _dns_unavailable(exc, name))]
    keys = [parse_record(text) for text in records]
    keys = [tags for tags in keys if "p" in tags]
    publish = zone_line(config["DKIM_SELECTOR"], config["DKIM_DOMAIN"], key)
    if not keys:
        missing = _(
            "žádný záznam DKIM na %(name)s; zveřejněte: %(publish)s", name=name, publish=publish
        )
        return [Result("dkim-dns", FAIL, missing)]
    if len(keys) > 1:
        several = ngettext(
            "%(num)d záznam DKIM na %(name)s; nechte jeden",
            "%(num)d záznamů DKIM na %(name)s; nechte jeden",
            len(keys),
            name=name,
        )
        return [Result("dkim-dns", FAIL, several)]
    published = keys[0]
    if not published["p"]:
        return [
            Result("dkim-dns", FAIL, _("klíč na %(name)s je zneplatněný (prázdné p=)", name=name))
        ]
    if published["p"] != public_key_b64(key):
        return [
            Result(
                "dkim-dns",
                FAIL,
                _(
                    "klíč zveřejněný na %(name)s není veřejnou částí %(path)s: každý podpis by "
                    "selhal; zveřejněte: %(publish)s",
                    name=name,
                    path=config["DKIM_PRIVATE_KEY_PATH"],
                    publish=publish,
                ),
            )
        ]
    if published.get("t", "").find("y") >= 0:
        return [
            Result(
                "dkim-dns",
                WARN,
                _("%(name)s odpovídá, ale je v testovacím režimu (t=y)", name=name),
            )
        ]
    return [Result("dkim-dns", OK, _("%(name)s zveřejňuje veřejnou část klíče", name=name))]


def _dns_unavailable(exc: DnsUnavailable, name: str) -> str:
    return _("DNS není dostupné (%(error)s); ověřte: dig TXT %(name)s", error=exc, name=name)


def check_spf(config: Mapping[str, Any], resolve: Resolver) -> list[Result]:
    domain = domain_of(envelope_address(config))
    if not domain or domain in PLACEHOLDER_DOMAINS:
        return [Result("spf", SKIP, _("žádná skutečná doména obálky (MAIL_FROM / BOUNCE_ADDRESS)"))]
    try:
        records = [r for r in resolve(domain) if r.lower().startswith("v=spf1")]
    except DnsUnavailable as exc:
        return [Result("spf", SKIP, _dns_unavailable(exc, domain))]
    if not records:
        return [
            Result(
                "spf",
                FAIL,
                _(
                    "žádný záznam SPF na %(domain)s (doména adresy pro nedoručenky); zveřejněte "
                    'např. "v=spf1 include:<SPF vašeho relaye> -all"',
                    domain=domain,
                ),
            )
        ]
    if len(records) > 1:
        several = ngettext(
            "%(num)d záznam SPF na %(domain)s: permerror",
            "%(num)d záznamů SPF na %(domain)s: permerror",
            len(records),
            domain=domain,
        )
        return [Result("spf", FAIL, several)]
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        anyone = _(
            "%(domain)s: %(record)s dovoluje komukoli posílat za doménu",
            domain=domain,
            record=repr(record),
        )
        return [Result("spf", FAIL, anyone)]
    if "?all" in terms:
        neutral = _(
            "%(domain)s: %(record)s končí ?all (neutrální)", domain=domain, record=repr(record)
        )
        return [Result("spf", WARN, neutral)]
    return [Result("spf", OK, f"{domain}: {record}")]


def check_dmarc(config: Mapping[str, Any], resolve: Resolver) -> list[Result]:
    from_domain = domain_of(config.get("MAIL_FROM") or "")
    if not from_domain or from_domain in PLACEHOLDER_DOMAINS:
        return [Result("dmarc", SKIP, _("MAIL_FROM nemá skutečnou doménu"))]
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
        return [Result("dmarc", SKIP, _dns_unavailable(exc, f"_dmarc.{from_domain}"))]
    if not records:
        return [
            Result(
                "dmarc",
                FAIL,
                _(
                    "žádný záznam DMARC na _dmarc.%(domain)s: Gmail a Yahoo bez něj hromadnou "
                    'poštu odmítají; zveřejněte aspoň "v=DMARC1; p=none; '
                    'rua=mailto:dmarc@%(domain)s"',
                    domain=from_domain,
                ),
            )
        ]
    record = records[0]
    tags = parse_record(record)
    policy = _(
        "_dmarc.%(domain)s: %(record)s (politika %(policy)s)",
        domain=domain,
        record=record,
        policy=tags.get("p", "?"),
    )
    return [Result("dmarc", OK, policy)]


def check_database() -> list[Result]:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as exc:
        db.session.rollback()
        return [Result("database", FAIL, _no_answer(exc))]
    return [Result("database", OK, _("%(dialect)s odpovídá", dialect=db.engine.dialect.name))]


def _no_answer(exc: Exception) -> str:
    return _("neodpovídá: %(error)s", error=f"{type(exc).__name__}: {exc}")[:300]


def check_redis() -> list[Result]:
    try:
        redis_connection().ping()
    except Exception as exc:
        return [Result("redis", FAIL, _no_answer(exc))]
    return [Result("redis", OK, _("odpovídá"))]


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
