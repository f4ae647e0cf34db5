"""Configuration read from the environment (DESIGN.md §5.2).

Every setting has one place: the table in README.md mirrors `SETTINGS` below.
Production refuses to start without the secrets and services it cannot guess;
the dev command and the tests fill those in themselves.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .deliverability.dkim import DkimKeyError, ascii_domain, load_private_key

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """The environment lacks or mangles a setting the service cannot run without."""


REQUIRED = ("SECRET_KEY", "REDIS_URL", "SMTP_URL")
PRIVACY_LINK_MIN_AGE = 300
PRIVACY_LINK_LONGEST = 24 * 3600


def _flag(value: str) -> bool:
    return value.strip().lower() not in {"", "0", "off", "false", "no"}


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _int(value: str) -> int:
    return int(value.strip())


# name -> (parser, default). Defaults that depend on the instance folder are
# filled in by `load_config`.
SETTINGS: dict[str, tuple[Any, Any]] = {
    "DATABASE_URL": (str, None),
    "REDIS_URL": (str, None),
    "SMTP_URL": (str, None),
    "SMTP_TIMEOUT": (_int, 30),
    # The wait for the server's answer to a whole message: RFC 5321 §4.5.3.2.6 asks
    # for 10 minutes, since giving up there is what sends a message twice. Never
    # shorter than SMTP_TIMEOUT (SmtpSettings.from_url).
    "SMTP_DATA_TIMEOUT": (_int, 600),
    # "auto": trust what the worker saw in the SMTP server's EHLO answer;
    # "on"/"off" force it (local parts with diacritics need SMTPUTF8).
    "SMTPUTF8": (str, "auto"),
    "BASE_URL": (str, "http://127.0.0.1:5000"),
    "SECRET_KEY": (str, None),
    "SECRET_KEY_FALLBACKS": (_list, []),
    # Keys the suppression hashes; set it so rotating SECRET_KEY keeps them.
    "SUPPRESSION_KEY": (str, None),
    "MAIL_FROM": (str, "Zpravodaj sociálního bydlení <zpravodaj@localhost.localdomain>"),
    "DEFAULT_LIST": (str, "zpravodaj"),
    "EMBED_ORIGINS": (_list, []),
    "RATE_LIMITS": (_flag, True),
    "RATE_LIMIT_SUBSCRIBE_IP": (str, "20 per hour; 5 per minute"),
    "RATE_LIMIT_SUBSCRIBE_ADDRESS": (str, "5 per hour"),
    "RATE_LIMIT_LOGIN_IP": (str, "10 per minute; 60 per hour"),
    "RATE_LIMIT_LOGIN_ACCOUNT": (str, "5 per minute; 30 per hour"),
    "RATE_LIMIT_API": (str, "600 per minute"),
    # An admin session ends after this many hours without a request.
    "ADMIN_SESSION_HOURS": (_int, 8),
    "CONFIRMATION_MAILS_PER_HOUR": (_int, 3),
    "CONFIRM_TOKEN_MAX_AGE_DAYS": (_int, 7),
    # One reminder to a sign-up still unconfirmed after this many hours (0: none).
    "CONFIRM_REMINDER_HOURS": (_int, 48),
    # Seconds a mailed export/erase link stays valid (the preferences link never grants those).
    "PRIVACY_LINK_MAX_AGE": (_int, 3600),
    # A coordinator's invitation stays valid this long (0: until used).
    "INVITE_TOKEN_MAX_AGE_DAYS": (_int, 30),
    "CHECK_DELIVERABILITY": (_flag, False),
    "DNS_TIMEOUT": (_int, 5),
    "MAIL_RETRY_INTERVALS": (lambda v: [int(x) for x in _list(v)], [10, 60, 300, 900, 3600]),
    "RECONCILE_INTERVAL": (_int, 30),
    # Unattended operation: how often at most the workers probe an SMTP relay that is
    # away (the backoff's cap), and how long a stopping worker may take.
    "SMTP_RECOVERY_PROBE_SECONDS": (float, 30.0),
    "WORKER_SHUTDOWN_SECONDS": (_int, 60),
    "RECONCILE_GRACE_SECONDS": (_int, 60),
    "MAIL_CLAIM_LEASE_SECONDS": (_int, 120),
    "MAIL_MAX_AGE_HOURS": (_int, 72),
    "PENDING_PURGE_DAYS": (_int, 30),
    # Delivery engine (issues and announcements).
    "BATCH_SIZE": (_int, 500),
    "BATCH_LEASE_SECONDS": (_int, 60),
    # PostgreSQL: wait for the disk flush of every per-message record (see workers/delivery.py).
    "DELIVERY_SYNCHRONOUS_COMMIT": (_flag, True),
    "SEND_RATE": (float, 0.0),
    "SEND_RATE_PER_DOMAIN": (str, ""),
    "PROGRESS_RATE_WINDOW_SECONDS": (_int, 60),
    "TIMEZONE": (str, "Europe/Prague"),
    "PROXY_FIX": (_int, 0),
    # Working groups: the reminder before a meeting, and the attachment size limit.
    "MEETING_REMINDER_HOURS": (_int, 24),
    "ATTACHMENT_MAX_BYTES": (_int, 10 * 1024 * 1024),
    # Deliverability: DKIM signing of every mail (all three, or none).
    "DKIM_DOMAIN": (str, None),
    "DKIM_SELECTOR": (str, None),
    "DKIM_PRIVATE_KEY_PATH": (str, None),
    # Bounces: the VERP base address (bounces+TOKEN@domain); empty means
    # "bounces@" on MAIL_FROM's domain. Soft bounces suppress an address once
    # BOUNCE_SOFT_LIMIT of them (one a day) span at least BOUNCE_SOFT_DAYS with
    # no accepted delivery in between; raw reports are kept BOUNCE_RAW_DAYS.
    "BOUNCE_ADDRESS": (str, ""),
    "BOUNCE_SOFT_LIMIT": (_int, 5),
    "BOUNCE_SOFT_DAYS": (_int, 7),
    "BOUNCE_RAW_DAYS": (_int, 30),
    # The bounce mailbox read by `zpravodaj bounces poll` (imaps://user:pass@host/INBOX).
    "BOUNCE_IMAP_URL": (str, ""),
    "BOUNCE_IMAP_INTERVAL": (_int, 60),
    # Human replies reaching the bounce address are forwarded here (empty: dropped).
    "REPLY_TO_FORWARD": (str, ""),
    # Retention (see README, "Personal data"): days, 0 keeps for ever.
    "DELIVERY_DETAIL_DAYS": (_int, 180),
    "CONSENT_EVIDENCE_DAYS": (_int, 3 * 365),
    # The privacy notice (/privacy): the controller (name, seat, IČO), the contact for
    # data requests and the data protection officer; empty shows a placeholder.
    "PRIVACY_CONTROLLER": (str, ""),
    "PRIVACY_CONTACT": (str, ""),
    "PRIVACY_DPO": (str, ""),
    # Operations (README, "Metrics and logs"): the log format and level, and /metrics.
    "LOG_FORMAT": (lambda v: v.strip().lower(), "text"),
    "LOG_LEVEL": (lambda v: v.strip().upper(), "INFO"),
    "METRICS": (_flag, True),
    "METRICS_TOKEN": (str, ""),
    # Clients allowed to read /metrics: loopback and the private ranges by default.
    "METRICS_ALLOW": (
        _list,
        ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
    ),
}


# Old names still read when the new one is not set (deprecated, issue 13).
DEPRECATED_NAMES = {
    "BOUNCE_SOFT_THRESHOLD": "BOUNCE_SOFT_LIMIT",
    "BOUNCE_SOFT_WINDOW_DAYS": "BOUNCE_SOFT_DAYS",
}


def load_config(environ: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    """Parse the known settings from `environ`, applying defaults."""
    config: dict[str, Any] = {}
    for name, (parse, default) in SETTINGS.items():
        raw = environ.get(name)
        old = next((o for o, new in DEPRECATED_NAMES.items() if new == name), None)
        if (raw is None or raw == "") and old and environ.get(old):
            log.warning("%s is deprecated; set %s instead", old, name)
            raw = environ[old]
        if raw is None or raw == "":
            config[name] = default
            continue
        try:
            config[name] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not valid: {exc}") from exc
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(instance_path, "zpravodaj.sqlite3")
    return config


def check_required(config: Mapping[str, Any]) -> None:
    """Refuse to run without the settings that have no safe default."""
    missing = [name for name in REQUIRED if not config.get(name)]
    if missing:
        # Czech like the rest of what operators read; one line, naming every one.
        raise ConfigError(
            "Chybí nastavení "
            + ", ".join(missing)
            + ": zadejte je v prostředí (viz README.md, Configuration),"
            " nebo lokálně spusťte `zpravodaj dev`."
        )
    check_smtp_url(config["SMTP_URL"])
    check_redis_url(config["REDIS_URL"])
    if config.get("SMTPUTF8") not in {"auto", "on", "off"}:
        raise ConfigError("SMTPUTF8 must be one of auto, on, off.")
    if config["SMTP_TIMEOUT"] < 1:
        # 0 would make the SMTP sockets non-blocking: every connection would fail.
        raise ConfigError("SMTP_TIMEOUT must be at least 1 second.")
    if config["BATCH_LEASE_SECONDS"] <= config["SMTP_TIMEOUT"]:
        # A batch waiting on a slow server must not look abandoned to the reconciler.
        raise ConfigError("BATCH_LEASE_SECONDS must be longer than SMTP_TIMEOUT.")
    if not PRIVACY_LINK_MIN_AGE <= config["PRIVACY_LINK_MAX_AGE"] <= PRIVACY_LINK_LONGEST:
        # Shorter than a mail takes to arrive is useless; a link valid for days is the
        # forwarded-newsletter problem again.
        raise ConfigError(
            f"PRIVACY_LINK_MAX_AGE must be between {PRIVACY_LINK_MIN_AGE} and "
            f"{PRIVACY_LINK_LONGEST} seconds (default 3600, one hour)."
        )
    if not 1 <= config["ADMIN_SESSION_HOURS"] <= 24 * 31:
        raise ConfigError("ADMIN_SESSION_HOURS must be between 1 and 744 (31 days).")
    if config["SMTP_RECOVERY_PROBE_SECONDS"] <= 0:
        raise ConfigError("SMTP_RECOVERY_PROBE_SECONDS must be more than 0.")
    if config["WORKER_SHUTDOWN_SECONDS"] < 1:
        raise ConfigError("WORKER_SHUTDOWN_SECONDS must be at least 1.")
    if config["BATCH_SIZE"] < 1:
        raise ConfigError("BATCH_SIZE must be at least 1.")
    domain_rates = config["SEND_RATE_PER_DOMAIN"]
    for part in filter(None, (p.strip() for p in domain_rates.split(","))):
        value = part.rpartition("=")[2]
        try:
            float(value)
        except ValueError:
            raise ConfigError(
                f"SEND_RATE_PER_DOMAIN={domain_rates!r}: use e.g. 'seznam.cz=5,*=20'."
            ) from None
    check_dkim(config)
    check_operations(config)


def check_operations(config: Mapping[str, Any]) -> None:
    """The log format and level, and the networks allowed to read /metrics."""
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError("LOG_FORMAT must be text or json.")
    if config["LOG_LEVEL"] not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")
    for network in config["METRICS_ALLOW"]:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"METRICS_ALLOW: {network!r} is no network; use e.g. 10.0.0.0/8,127.0.0.1."
            ) from None


SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")  # as smtp_settings.py reads them


def check_smtp_url(url: str) -> None:
    """A scheme the workers know and a usable port; the URL (and its password) is not echoed.

    Checked at start-up: otherwise the web starts and every mail fails in the worker.
    """
    _check_url("SMTP_URL", url, SMTP_SCHEMES, "smtp+starttls://user:password@mail.example:587")


REDIS_SCHEMES = ("redis", "rediss", "unix")  # what redis-py's from_url reads


def check_redis_url(url: str) -> None:
    """A scheme redis-py knows and a usable port; the URL (and its password) is not echoed.

    Checked at start-up by every process: the web, the workers and each command, which
    connects only when it first needs Redis and would otherwise take such a URL for a
    Redis that is down (a bounce piped in by the MTA answered "stored" for a forward no
    worker would ever send).
    """
    examples = "redis://127.0.0.1:6379/0 or unix:///run/redis/redis.sock"
    _check_url("REDIS_URL", url, REDIS_SCHEMES, examples)


def _check_url(name: str, url: str, schemes: tuple[str, ...], examples: str) -> None:
    """One of `schemes` and a port that is a number: one line naming the setting."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        starts = ", ".join(f"{scheme}://" for scheme in schemes[:-1])
        raise ConfigError(f"{name}: start it with {starts} or {schemes[-1]}:// (e.g. {examples}).")
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is no number or too large)
    except ValueError:
        raise ConfigError(f"{name}: the port must be a number up to 65535.") from None


DKIM_SETTINGS = ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_PATH")


def check_dkim_selector(selector: str) -> None:
    """A selector is a DNS label (or dotted labels): letters, digits and hyphens."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*", selector):
        raise ConfigError(f"DKIM_SELECTOR={selector!r}: use letters, digits and hyphens.")


def check_dkim(config: Mapping[str, Any]) -> None:
    """All three DKIM settings or none, and a key the workers can sign with.

    Checked at start-up so a typo in the key path stops the service with a
    clear message, instead of holding back every mail in the queue. (Loading
    the key here also caches it for the worker's forked work horses.)
    """
    given = [name for name in DKIM_SETTINGS if config.get(name)]
    if not given:
        return
    if len(given) < len(DKIM_SETTINGS):
        missing = ", ".join(name for name in DKIM_SETTINGS if name not in given)
        raise ConfigError(
            f"DKIM is half configured: set {missing} too, or unset "
            + ", ".join(given)
            + " (see README.md, Deliverability; `zpravodaj dkim keygen` makes a key)."
        )

    check_dkim_selector(config["DKIM_SELECTOR"])
    try:
        ascii_domain(config["DKIM_DOMAIN"])
        load_private_key(config["DKIM_PRIVATE_KEY_PATH"])
    except DkimKeyError as exc:
        raise ConfigError(f"{exc}. Check DKIM_DOMAIN and DKIM_PRIVATE_KEY_PATH.") from exc
