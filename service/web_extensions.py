"""Unbound Flask extensions of the web app only, bound in `create_app`.

Not in extensions.py, which every worker imports: Flask-Limiter (with limits and
its storage drivers), Flask-Login and Flask-WTF (with WTForms) weigh about 3 MB of
Python objects, and a worker's app (`create_worker_app`) never serves a request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import flask_limiter
import flask_login
from flask import Flask, Response, current_app, request, session
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from .request_values import bound


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter, whose check before every request skips `own_limits_endpoints`: views
    that count their own limits and have none of Flask-Limiter's (no default, application
    or blueprint limit is configured, and they carry no `limiter.limit`).

    `POST /subscribe` checks its limits in one Redis script with its hand-off
    (subscriptions/rate_limits.py); Flask-Limiter's hook found nothing to check there and
    still cost about a tenth of the sign-up's CPU (issue 14, bench/README.md, seventh
    round). Its after-request and teardown hooks skip them too (`init_app`).
    """

    def __init__(self, *args: Any, own_limits_endpoints: frozenset[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own_limits_endpoints = own_limits_endpoints

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and bound(request).endpoint in self.own_limits_endpoints:
            return
        super()._check_request_limit(callable_name, in_middleware)

    def init_app(self, app: Flask) -> None:
        """Flask-Limiter's set-up; its after-request hook (headers of the limits it checked,
        conditional deductions) and its teardown (forgetting them) skip the same endpoints.

        With its check skipped, a request to those endpoints has no limit, deduction or
        state of Flask-Limiter's: the hooks built an empty state only to find nothing in
        it, about 2 % of a sign-up's instructions (issue 14, bench/README.md, eighth
        round). `skipped_hooks` names the hooks found and wrapped (a test checks both
        were: a Flask-Limiter that registers them otherwise keeps them as they are).
        """
        super().init_app(app)
        self.skipped_hooks: list[str] = []
        after = app.after_request_funcs.setdefault(None, [])
        for index, hook in enumerate(after):
            if isinstance(hook, partial) and hook.args == (self,):
                after[index] = _after_request_unless(self.own_limits_endpoints, hook)
                self.skipped_hooks.append(hook.func.__name__)
        teardown = app.teardown_request_funcs.setdefault(None, [])
        for index, hook in enumerate(teardown):
            if getattr(hook, "__self__", None) is self:
                teardown[index] = _teardown_unless(self.own_limits_endpoints, hook)
                self.skipped_hooks.append(hook.__name__)


def _after_request_unless(
    endpoints: frozenset[str], hook: Callable[..., Any]
) -> Callable[[Response], Response]:
    def after_request(response: Response) -> Response:
        if bound(request).endpoint in endpoints:
            return response
        return hook(response)

    return after_request


def _teardown_unless(
    endpoints: frozenset[str], hook: Callable[..., Any]
) -> Callable[[BaseException | None], None]:
    def teardown(error: BaseException | None = None) -> None:
        if bound(request).endpoint not in endpoints:
            hook(error)

    return teardown


class LoginManager(flask_login.LoginManager):
    """Flask-Login, whose hook after every request does its work only when there is any:
    a remember-me cookie to set or clear (the session says so) or refreshed on each
    request (REMEMBER_COOKIE_REFRESH_EACH_REQUEST). Otherwise it read the session and
    the setting through Flask's proxies to do nothing, on every public page and sign-up
    (2 % of a sign-up's instructions; issue 14, bench/README.md, thirteenth round)."""

    def _update_remember_cookie(self, response: Response) -> Response:
        if "_remember" in bound(session) or bound(current_app).config.get(
            "REMEMBER_COOKIE_REFRESH_EACH_REQUEST"
        ):
            return cast(Response, super()._update_remember_cookie(response))
        return response


# Limits are declared on the views; storage and on/off come from the config.
limiter = Limiter(
    key_func=get_remote_address, own_limits_endpoints=frozenset({"subscriptions.subscribe"})
)
# Admin sessions; the API authenticates with bearer tokens instead.
login_manager = LoginManager()
# Checked on the admin blueprint only: public forms and the one-click
# endpoint are protected by rate limits, the honeypot and double opt-in.
csrf = CSRFProtect()
