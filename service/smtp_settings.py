"""SMTP_URL read into its parts: the workers send with them, `zpravodaj doctor` checks them.

`smtp://host:port` (plain), `smtp+starttls://user:pass@host:587` (STARTTLS)
or `smtps://host:465` (TLS from the start); a user name and password in the
URL are percent-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "plain", "starttls" or "tls"
    username: str | None
    password: str | None
    timeout: float
    # Seconds to wait for the server's answer to a whole message (after its final
    # dot); never less than `timeout`. See workers/smtp.py, `_data`.
    data_timeout: float = 600

    @classmethod
    def from_url(cls, url: str, timeout: float = 30, data_timeout: float = 600) -> SmtpSettings:
        parts = urlsplit(url)
        schemes = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
        if parts.scheme not in schemes:
            raise ValueError(f"SMTP_URL scheme must be one of {', '.join(schemes)}")
        security, default_port = schemes[parts.scheme]
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or default_port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
            data_timeout=max(timeout, data_timeout),
        )
