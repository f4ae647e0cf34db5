"""Opening a subscriber's signed link, and the Czech page when it cannot be opened.

The subscription pages (confirm, unsubscribe, preferences) and the working
groups' pages (join, invitation) take the same signed links (tokens.py); a bad
one, an expired one and one whose subscriber is gone each get their own page
and status.
"""

from __future__ import annotations

from flask import render_template

from . import tokens
from .models import Subscriber
from .subscriptions import actions


class LinkProblem(Exception):
    """A signed link that cannot be used; rendered as a Czech page."""

    status = 400
    template = "public/link_invalid.html"

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token


class LinkExpired(LinkProblem):
    status = 410
    template = "public/link_expired.html"


class SubscriberGone(LinkProblem):
    status = 404
    template = "public/link_gone.html"


def render_link_problem(error: LinkProblem) -> tuple[str, int]:
    """The Czech page for a link that cannot be used; blueprints register it for LinkProblem."""
    return render_template(error.template, token=error.token), error.status


def load_link(
    purpose: str,
    token: str,
    max_age: int | None = None,
    expired: type[LinkExpired] | None = None,
) -> tuple[Subscriber, dict]:
    """The subscriber a signed link names, or a LinkProblem (`expired`: its expiry page)."""
    try:
        payload = tokens.load(purpose, token, max_age=max_age)
    except tokens.SignatureExpired as exc:
        raise (expired or LinkExpired)(token) from exc
    except tokens.BadSignature as exc:
        raise LinkProblem(token) from exc
    if not isinstance(payload, dict):
        raise LinkProblem(token)
    subscriber = actions.subscriber_by_public_key(payload.get("s"))
    if subscriber is None:
        raise SubscriberGone(token)
    return subscriber, payload
