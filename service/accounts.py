"""Accounts of editors, administrators and coordinators, and their API tokens.

Passwords are hashed with scrypt (Werkzeug's default, a memory-hard KDF);
API tokens are random and kept only as their SHA-256, so a database leak
does not hand out working tokens.
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .clock import utcnow
from .extensions import db
from .models import USER_ROLES, ApiToken, MailingList, User

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "zpr_"


@functools.cache
def _dummy_hash() -> str:
    """Hash checked when the account does not exist, so a login for an unknown
    address costs as much as one for a known address (no timing oracle).

    Made on first need, not at import: scrypt takes 32 MiB and ~0.1 s, and
    every process (web, worker, CLI) imports this module while only a sign-in
    with an unknown address uses it.
    """
    return generate_password_hash("not a password", method="scrypt")


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message is for the user, in the
    request's language."""


def signed_in_user() -> User | None:
    """The account signed in to this request, or None (anonymous, or disabled).

    The User itself rather than Flask-Login's untyped proxy of it, so that it
    can be passed on and stored on rows.
    """
    # Imported here: this module serves commands and workers too, which never sign in
    # (Flask-Login imports Flask's test client: ~1 MB in a worker).
    from flask_login import current_user

    user = current_user._get_current_object()
    return user if isinstance(user, User) and user.is_authenticated else None


def normalise_email(email: str) -> str:
    return email.strip().casefold()


def password_problem(password: str) -> str | None:
    """Why `password` is not acceptable, in the request's language, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return ngettext(
            "Heslo musí mít alespoň %(num)d znak.",
            "Heslo musí mít alespoň %(num)d znaků.",
            MIN_PASSWORD_LENGTH,
        )
    if password.strip() != password:
        return _("Heslo nesmí začínat ani končit mezerou.")
    return None


def create_user(
    email: str, password: str, role: str, lists: list[MailingList] | None = None
) -> User:
    """A new account; coordinators must be given at least one list."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 320:
        raise AccountError(_("Neplatný e-mail."))
    if role not in USER_ROLES:
        raise AccountError(
            _("Neznámá role %(role)r; možnosti: %(roles)s.", role=role, roles=", ".join(USER_ROLES))
        )
    if role == "coordinator" and not lists:
        raise AccountError(_("Koordinátor musí mít přidělenou alespoň jednu skupinu."))
    if role != "coordinator" and lists:
        raise AccountError(_("Skupiny se přidělují jen koordinátorům."))
    if role == "coordinator" and any(m.kind != "group" for m in lists or ()):
        raise AccountError(_("Koordinátorovi lze přidělit jen pracovní skupiny, ne zpravodaj."))
    if problem := password_problem(password):
        raise AccountError(problem)
    if db.session.scalar(select(User).filter_by(email=email)) is not None:
        raise AccountError(_("Účet %(email)s už existuje.", email=email))
    user = User(
        email=email,
        password_hash=generate_password_hash(password, method="scrypt"),
        role=role,
        lists=list(lists or []),
    )
    db.session.add(user)
    return user


def set_password(user: User, password: str) -> None:
    """A new password; every session signed in with the old one ends."""
    if problem := password_problem(password):
        raise AccountError(problem)
    user.password_hash = generate_password_hash(password, method="scrypt")
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every admin session of `user`, on every browser (cookies copied elsewhere too).

    Sessions carry the generation they were signed in with (see
    service/admin/auth.py); a new generation makes all of them stale.
    """
    user.session_generation = (user.session_generation or 0) + 1


def set_active(user: User, active: bool) -> None:
    """Enable or disable an account; disabling ends its sessions, so enabling
    it again later does not bring old cookies back to life."""
    if user.active and not active:
        end_sessions(user)
    user.active = active


def check_password(user: User, password: str) -> bool:
    """Whether `password` is the account's current password."""
    return check_password_hash(user.password_hash, password)


def find_user(email: str) -> User | None:
    """The account with this address, active or not."""
    return db.session.scalar(select(User).filter_by(email=normalise_email(email)))


def authenticate(email: str, password: str) -> User | None:
    """The active account with this address and password, or None."""
    user = db.session.scalar(select(User).filter_by(email=normalise_email(email)))
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    user.last_login_at = utcnow()
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(user: User) -> str:
    """A new API token for `user`; only its hash is stored, so show it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, token_hash=_token_hash(token), prefix=token[:12]))
    return token


def user_for_token(token: str) -> User | None:
    """The active account a bearer token belongs to, or None."""
    if not token or len(token) > 200:
        return None
    row = db.session.scalar(select(ApiToken).filter_by(token_hash=_token_hash(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    row.last_used_at = utcnow()
    return row.user
