"""One DKIM key per test session, its PEM file, and an offline DNS for dkim.verify."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import rsa

from service.deliverability.dkim import (
    generate_private_key,
    private_key_pem,
    record_name,
    record_value,
)

DOMAIN = "socialnibydleni.example"  # MAIL_FROM's domain in tests/conftest.py
SELECTOR = "zp2026"


@functools.cache
def session_key() -> rsa.RSAPrivateKey:
    """Generated once: a 2048-bit key takes a noticeable fraction of a second."""
    return generate_private_key()


@functools.cache
def session_key_path() -> str:
    directory = tempfile.mkdtemp(prefix="zpravodaj-dkim-")
    path = os.path.join(directory, "dkim.pem")
    with open(path, "wb") as handle:
        handle.write(private_key_pem(session_key()))
    os.chmod(path, 0o600)
    return path


def dkim_settings(path: str | None = None) -> dict[str, str]:
    return {
        "DKIM_DOMAIN": DOMAIN,
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY_PATH": path or session_key_path(),
    }


def offline_dns(
    key: rsa.RSAPrivateKey | None = None, selector: str = SELECTOR, domain: str = DOMAIN
) -> Callable[..., bytes | None]:
    """A dkimpy `dnsfunc` that knows one DKIM record and nothing else (no network)."""
    name = (record_name(selector, domain) + ".").encode("ascii")
    value = record_value(key or session_key()).encode("ascii")

    def dnsfunc(queried: bytes, timeout: float = 5) -> bytes | None:
        return value if queried.rstrip(b".") + b"." == name else None

    return dnsfunc
