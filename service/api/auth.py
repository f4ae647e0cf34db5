"""Bearer-token authentication and the per-token rate limit of the API.

Tokens come from `zpravodaj tokens create` and are kept only as SHA-256
(service/accounts.py). No cookies are read, so the API needs no CSRF token:
a page in another origin cannot make a browser attach the bearer header.
"""

from __future__ import annotations

import hashlib

from flask import current_app, g, request
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address

from .. import accounts
from ..extensions import db
from ..models import MailingList, User
from ..web_extensions import limiter
from .blueprint import bp
from .errors import ApiError

# Routes anyone may read: the API's own description.
PUBLIC_ENDPOINTS = {"api.openapi_document"}
_CHALLENGE = 'Bearer realm="zpravodaj"'


def presented_token() -> str | None:
    """The token of `Authorization: Bearer <token>`, or None when there is none."""
    scheme, _space, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _rate_key() -> str:
    """One bucket per presented token (by hash), or per address without one."""
    token = presented_token()
    if token is None:
        return "api-ip:" + (get_remote_address() or "-")
    return "api-token:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def _api_limit() -> str:
    return current_app.config.get("RATE_LIMIT_API") or "600 per minute"


# Generous: it protects the service from a runaway script, not from editors.
limiter.limit(_api_limit, key_func=_rate_key)(bp)


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    token = presented_token()
    if token is None:
        raise ApiError(
            401,
            _("Chybí přístupový token (hlavička Authorization: Bearer …)."),
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    user = accounts.user_for_token(token)
    if user is None:
        raise ApiError(
            401,
            _("Neplatný nebo zrušený přístupový token."),
            headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
        )
    # Keeps the token's last use, which `zpravodaj tokens list` shows.
    db.session.commit()
    g.api_user = user


def current_api_user() -> User:
    """The account of the request's token (set by the blueprint's before-request hook)."""
    return g.api_user


def may_see(mailing_list: MailingList | None) -> bool:
    """Whether the account may see (and so manage) the list; coordinators: only their own groups.

    A list the account may not see is answered exactly like one that does not
    exist (404, same message), so ids and slugs cannot be probed for existence.
    """
    return mailing_list is not None and current_api_user().may_manage(mailing_list)
