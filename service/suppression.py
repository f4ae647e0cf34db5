"""Suppression: addresses no mail may go to (erased, bounced, withdrawn), kept as keyed hashes.

Every sender checks it right before sending (DESIGN.md §3), so an erasure or a
bounce takes effect at once; imports and invitations check it too. Only the
hash of the address is kept (addresses.address_hash), under the current key
and every older one.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from .addresses import address_hash, address_hashes
from .extensions import db
from .models import Suppression, SuppressionReason


def suppress(address_key: str, reason: SuppressionReason) -> None:
    digest = address_hash(address_key)
    if db.session.scalar(select(Suppression).filter_by(address_hash=digest)) is None:
        db.session.add(Suppression(address_hash=digest, reason=reason))


def suppression_reason(address_key: str) -> str | None:
    """Why the address is suppressed ("erased", "bounced", "withdrawn"), None when it is not.

    Looks under the current key and every older one (addresses.address_hashes).
    """
    return db.session.scalar(
        select(Suppression.reason)
        .where(Suppression.address_hash.in_(address_hashes(address_key)))
        .order_by(Suppression.id.desc())
        .limit(1)
    )


def is_suppressed(address_key: str) -> bool:
    return suppression_reason(address_key) is not None


def lift_suppression(address_key: str) -> None:
    db.session.execute(
        delete(Suppression).where(Suppression.address_hash.in_(address_hashes(address_key)))
    )
