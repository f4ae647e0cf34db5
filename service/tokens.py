"""Signed links (DESIGN.md §6): one salt per purpose, opaque ids only.

Payloads carry the subscriber's random public key and list slugs, never the
address or a row id. Old keys in SECRET_KEY_FALLBACKS still verify, so a key
can be rotated without breaking the links in mails already delivered.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import zlib
from typing import Any, TypeGuard

from flask import current_app
from itsdangerous import (
    BadSignature,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import int_to_bytes
from itsdangerous.signer import HMACAlgorithm

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

    def dumps(self, obj: Any, salt: str | bytes | None = None) -> str:
        """itsdangerous's token, byte for byte, with the HMAC in one OpenSSL call.

        itsdangerous hands `hmac.new` its lazy SHA-1 function, which `hmac` can
        only run in pure Python (two hash objects per signature): with two
        tokens per delivered message that was a tenth of a worker's CPU
        (bench/README.md, Delivery). A signer other than the default HMAC-SHA1
        one goes the usual way.
        """
        signer = self.make_signer(salt)
        if not (self._compact_json and _is_default_hmac_sha1(signer)):
            return super().dumps(obj, salt)
        sep = signer.sep.encode() if isinstance(signer.sep, str) else signer.sep
        value = (
            _url_safe_payload(_COMPACT_JSON.encode(obj).encode())
            + sep
            + base64.urlsafe_b64encode(int_to_bytes(signer.get_timestamp())).rstrip(b"=")
        )
        signature = hmac.digest(signer.derive_key(), value, "sha1")
        return (value + sep + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    @functools.cached_property
    def _compact_json(self) -> bool:
        """Whether the payload is itsdangerous's compact JSON (what _COMPACT_JSON writes)."""
        sample = {"a": [1, "č"], "b": None}
        return not self.serializer_kwargs and self.serializer.dumps(sample) == (
            _COMPACT_JSON.encode(sample)
        )


# itsdangerous's JSON (compact, not ASCII-escaped), its encoder built once.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _url_safe_payload(data: bytes) -> bytes:
    """URLSafeSerializerMixin.dump_payload: zlib-compressed when that is shorter."""
    compressed = zlib.compress(data)
    if len(compressed) < len(data) - 1:
        return b"." + base64.urlsafe_b64encode(compressed).rstrip(b"=")
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _is_default_hmac_sha1(signer: Signer) -> TypeGuard[TimestampSigner]:
    """Whether `signer` signs with itsdangerous's default: HMAC with SHA-1."""
    default = Signer.default_digest_method
    return (
        isinstance(signer, TimestampSigner)
        and type(signer.algorithm) is HMACAlgorithm
        and signer.algorithm.digest_method is default
        and signer.digest_method is default
    )


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
