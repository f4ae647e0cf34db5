"""Deliverability: DKIM signing of outgoing mail and the `zpravodaj doctor` checks.

Receivers (Gmail, Seznam, Microsoft) file unsigned or unaligned bulk mail as
spam, and RFC 8058 one-click unsubscribe only counts when List-Unsubscribe and
List-Unsubscribe-Post are covered by a DKIM signature. Signing happens in the
worker's SMTP transport, right before a message goes out (workers/transport.py).
"""

from __future__ import annotations

from .dkim import DkimError, DkimKeyError, DkimSigner, load_private_key, signer_from_config

__all__ = ["DkimError", "DkimKeyError", "DkimSigner", "load_private_key", "signer_from_config"]
