"""Signed links (DESIGN.md §6): one salt per purpose, opaque ids only.

Payloads carry the subscriber's random public key and list slugs, never the
address or a row id. Old keys in SECRET_KEY_FALLBACKS still verify, so a key
can be rotated without breaking the links in mails already delivered.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import current_app
from itsdangerous import (
    BadSignature,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
)

from .models import Subscriber

__all__ = ["BadSignature", "SignatureExpired", "dump", "load"]

SALTS = {
    "confirm": "zpravodaj.confirm",
    "unsubscribe": "zpravodaj.unsubscribe",
    "preferences": "zpravodaj.preferences",
    "invite": "zpravodaj.invite",
    # The short-lived export/erase link mailed on request (PRIVACY_LINK_MAX_AGE).
    "privacy": "zpravodaj.privacy",
    # A member's calendar feed of a group's meetings.
    "calendar": "zpravodaj.calendar",
}


class _KeyOnceSigner(TimestampSigner):
    """A signer that derives its signing key once: itsdangerous derives it
    (an HMAC) again for every signature, a tenth of a delivery's CPU."""

    @functools.cached_property
    def _signing_key(self) -> bytes:
        return super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is None:
            return self._signing_key
        return super().derive_key(secret_key)


class _SignerOnceSerializer(URLSafeTimedSerializer):
    """Builds its signer once instead of once per `dumps`/`loads` (see _KeyOnceSigner)."""

    default_signer = _KeyOnceSigner

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is not None and salt != self.salt:
            return super().make_signer(salt)
        if not hasattr(self, "_signer"):
            self._signer = super().make_signer(salt)
        return self._signer


def serializer(purpose: str) -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous signs with the last key and verifies with any of them.
    keys = (*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"])
    return _serializer(keys, SALTS[purpose])


@functools.lru_cache(maxsize=64)
def _serializer(keys: tuple[str, ...], salt: str) -> URLSafeTimedSerializer:
    """One serializer per key set and purpose for the life of the process."""
    return _SignerOnceSerializer(list(keys), salt=salt)


def dump(purpose: str, payload: Any) -> str:
    return serializer(purpose).dumps(payload)


def load(purpose: str, token: str, max_age: int | None = None) -> Any:
    """Verify and decode; raises SignatureExpired or BadSignature."""
    return serializer(purpose).loads(token, max_age=max_age)


def confirm_max_age() -> int:
    return current_app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"] * 24 * 3600


def confirm_token(subscriber: Subscriber, list_slugs: list[str]) -> str:
    return dump("confirm", {"s": subscriber.public_key, "l": sorted(list_slugs)})


def unsubscribe_token(subscriber: Subscriber, list_slug: str | None = None) -> str:
    """A list's unsubscribe link; without a list it leaves every list."""
    return dump("unsubscribe", {"s": subscriber.public_key, "l": list_slug})


def preferences_token(subscriber: Subscriber) -> str:
    return dump("preferences", {"s": subscriber.public_key})


def privacy_token(subscriber: Subscriber) -> str:
    """The export/erase link's token; valid PRIVACY_LINK_MAX_AGE seconds (privacy_max_age)."""
    return dump("privacy", {"s": subscriber.public_key})


def privacy_max_age() -> int:
    return current_app.config["PRIVACY_LINK_MAX_AGE"]
