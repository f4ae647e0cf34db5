"""E-mail address validation and normalisation, shared by the form, the API and imports.

email-validator does the parsing (RFC 5321/5322 with `strict=True` length
limits, IDNA for domains, special-use domains refused); this module adds
the few rules a public form needs on top: trimming, refusing line breaks,
and SMTPUTF8 only when the mail server can take it.
"""

from __future__ import annotations

import functools
import hmac
import importlib
import re
import time
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import lazy_gettext as _l

from .jobs import redis_connection
from .request_values import bound


def _remember_domains() -> None:
    """Let email-validator check each domain once per process, not once per address.

    Three quarters of `validate_email`'s time is the domain's IDNA round trip
    and its checks, for the same few domains over and over (an import of
    10,000 people has a few dozen: seznam.cz, gmail.com, ...). The check is a
    pure function of its arguments (special-use names are a module constant),
    so its results are kept (an invalid domain raises, and is not kept). If a
    later email-validator no longer has the function, nothing is changed;
    tests/test_addresses.py notices.
    """
    module = importlib.import_module("email_validator.validate_email")
    check = getattr(module, "validate_email_domain_name", None)
    if check is None or hasattr(check, "cache_info"):
        return

    @functools.lru_cache(maxsize=4096)
    def remembered(
        domain: str, test_environment: bool = False, globally_deliverable: bool = True
    ) -> Any:
        return check(
            domain, test_environment=test_environment, globally_deliverable=globally_deliverable
        )

    def validate_email_domain_name(
        domain: str, test_environment: bool = False, globally_deliverable: bool = True
    ) -> Any:
        # A copy: the caller may keep the dict it gets.
        return dict(remembered(domain, test_environment, globally_deliverable))

    validate_email_domain_name.cache_info = remembered.cache_info  # type: ignore[attr-defined]
    validate_email_domain_name.uncached = check  # type: ignore[attr-defined]
    setattr(module, "validate_email_domain_name", validate_email_domain_name)  # noqa: B010


_remember_domains()

INVALID_ADDRESS_MESSAGE = _l("Neplatný e-mail.")

# Where the worker records what the SMTP server's EHLO said about SMTPUTF8;
# the web process never talks SMTP itself.
SMTPUTF8_CAPABILITY_KEY = "zpravodaj:smtp:smtputf8"

# Plain spaces and tabs around a pasted address are trimmed; anything else
# (no-break spaces, zero-width characters, line breaks) makes it invalid.
_TRIMMED = " \t"
_TOP_LEVEL_DOMAIN = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")


class InvalidAddress(ValueError):
    """The text is not an address this service can mail."""


@dataclass(frozen=True)
class Address:
    """A validated address in the forms the service needs."""

    email: str  # normalised, Unicode domain: what the person sees
    ascii_email: str | None  # IDNA domain; None when the local part needs SMTPUTF8

    @property
    def key(self) -> str:
        """Case-folded: the identity of a subscriber."""
        return self.email.casefold()

    @property
    def needs_smtputf8(self) -> bool:
        return self.ascii_email is None


def parse_address(
    raw: object,
    *,
    allow_smtputf8: bool,
    check_deliverability: bool = False,
    dns_timeout: int = 5,
) -> Address:
    """Validate and normalise `raw`; raise InvalidAddress for anything unusable."""
    if not isinstance(raw, str):
        raise InvalidAddress("not text")
    text = raw.strip(_TRIMMED)
    if not text or "\r" in text or "\n" in text:
        raise InvalidAddress("empty or contains a line break")
    try:
        result = validate_email(
            text,
            allow_smtputf8=allow_smtputf8,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            globally_deliverable=True,
            check_deliverability=check_deliverability,
            timeout=dns_timeout,
            strict=True,
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    top_level = result.ascii_domain.rsplit(".", 1)[-1].lower()
    if not _TOP_LEVEL_DOMAIN.fullmatch(top_level):
        # Every real TLD is two or more letters (or an IDN's xn-- form).
        raise InvalidAddress("not a top-level domain")
    return Address(email=result.normalized, ascii_email=result.ascii_email)


def parse_address_for_app(raw: object) -> Address:
    """`parse_address` with the running app's SMTPUTF8 and DNS settings."""
    config = bound(current_app).config
    return parse_address(
        raw,
        allow_smtputf8=smtputf8_allowed(),
        check_deliverability=config["CHECK_DELIVERABILITY"],
        dns_timeout=config["DNS_TIMEOUT"],
    )


# What a worker last saw, kept by each app for a while (`app.extensions`):
# (time.monotonic() when read, allowed). Saves a Redis round trip per form.
SMTPUTF8_CAPABILITY_CACHE = "zpravodaj.smtputf8_capability"
_CAPABILITY_CACHE_SECONDS = 30.0


def smtputf8_allowed() -> bool:
    """Whether addresses with a non-ASCII local part can be accepted now.

    `SMTPUTF8=on|off` decides outright; `auto` trusts what a worker last saw
    in the SMTP server's EHLO (unknown counts as no: refusing is safe,
    accepting an address that can never be mailed is not).
    """
    app = bound(current_app)  # each read through the proxy looks the app up again
    setting = app.config["SMTPUTF8"]
    if setting != "auto":
        return setting == "on"
    cached = app.extensions.get(SMTPUTF8_CAPABILITY_CACHE)
    if cached and time.monotonic() - cached[0] < _CAPABILITY_CACHE_SECONDS:
        return cached[1]
    try:
        allowed = redis_connection().get(SMTPUTF8_CAPABILITY_KEY) == b"1"
    except Exception:  # Redis down: refuse rather than fail the form
        current_app.logger.warning("could not read the SMTPUTF8 capability from Redis")
        return False
    current_app.extensions[SMTPUTF8_CAPABILITY_CACHE] = (time.monotonic(), allowed)
    return allowed


def address_hashes(address_key: str) -> list[str]:
    """Keyed hashes of a case-folded address for the suppression list, the current one first.

    Keyed with a secret so the list cannot be reversed by hashing guesses:
    SUPPRESSION_KEY, else SECRET_KEY. Entries written under an older key must
    keep counting, or rotating SECRET_KEY (old key into SECRET_KEY_FALLBACKS)
    or setting SUPPRESSION_KEY later would quietly let every erased, bounced
    and withdrawn address be imported and mailed again; so the hashes under
    SECRET_KEY and each fallback are checked too.
    """
    config = current_app.config
    keys = [config["SUPPRESSION_KEY"] or config["SECRET_KEY"], config["SECRET_KEY"]]
    keys += config["SECRET_KEY_FALLBACKS"]
    return [_keyed_hash(key, address_key) for key in dict.fromkeys(keys) if key]


def address_hash(address_key: str) -> str:
    """The hash a new suppression of the address is stored under (the first of
    `address_hashes`, without computing the others: each sign-up's rate limit keys one)."""
    config = bound(current_app).config
    key = config["SUPPRESSION_KEY"] or config["SECRET_KEY"]
    return _keyed_hash(key, address_key) if key else address_hashes(address_key)[0]


def _keyed_hash(key: str, address_key: str) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, the same value as hmac.new(…).hexdigest().
    return hmac.digest(key.encode(), b"suppression:" + address_key.encode(), "sha256").hex()
