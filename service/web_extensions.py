"""Unbound Flask extensions of the web app only, bound in `create_app`.

Not in extensions.py, which every worker imports: Flask-Limiter (with limits and
its storage drivers), Flask-Login and Flask-WTF (with WTForms) weigh about 3 MB of
Python objects, and a worker's app (`create_worker_app`) never serves a request.
"""

from __future__ import annotations

from typing import Any

import flask_limiter
from flask import request
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter, whose check before every request skips `own_limits_endpoints`: views
    that count their own limits and have none of Flask-Limiter's (no default, application
    or blueprint limit is configured, and they carry no `limiter.limit`).

    `POST /subscribe` checks its limits in one Redis script with its hand-off
    (subscriptions/rate_limits.py); Flask-Limiter's hook found nothing to check there and
    still cost about a tenth of the sign-up's CPU (issue 14, bench/README.md, seventh
    round). Its after-request hook then finds no limit to describe, as before.
    """

    def __init__(self, *args: Any, own_limits_endpoints: frozenset[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own_limits_endpoints = own_limits_endpoints

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and request.endpoint in self.own_limits_endpoints:
            return
        super()._check_request_limit(callable_name, in_middleware)


# Limits are declared on the views; storage and on/off come from the config.
limiter = Limiter(
    key_func=get_remote_address, own_limits_endpoints=frozenset({"subscriptions.subscribe"})
)
# Admin sessions; the API authenticates with bearer tokens instead.
login_manager = LoginManager()
# Checked on the admin blueprint only: public forms and the one-click
# endpoint are protected by rate limits, the honeypot and double opt-in.
csrf = CSRFProtect()
