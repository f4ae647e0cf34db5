"""Signing in and out, and who may see what.

Flask-Login keeps the session (cookie flags from the config: HttpOnly,
SameSite=Lax, Secure behind https). Sign-in is throttled per IP and per
account through Flask-Limiter, so guessing passwords is slow from one
address and for one account from many addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from .. import accounts
from ..extensions import csrf, db, limiter, login_manager
from ..models import MailingList, User
from . import navigation
from .blueprint import bp

__all__ = ["current_user", "login_required", "require_list_access", "require_role"]


def init_app(app) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = "Pro pokračování se přihlaste."
    login_manager.login_message_category = "info"
    # A stolen session cookie used from elsewhere is dropped.
    login_manager.session_protection = "strong"
    csrf.init_app(app)

    navigation.init_app(app)

    @app.before_request
    def _forget_previous_request() -> None:
        # Flask-Login caches the user and Flask-WTF the CSRF token on `g`,
        # which lives as long as the app context; where one app context
        # outlives a request (the test suite, code dispatching requests inside
        # a context) the next request must load its own.
        g.pop("_login_user", None)
        g.pop(app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.active else None


@bp.before_request
def _guard() -> Any:
    """CSRF for every POST of the blueprint; sign-in for every view but the login page."""
    if request.endpoint == "admin.login":
        return None  # its form checks the CSRF token and says "expired" in Czech
    if request.method == "POST":
        csrf.protect()
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def require_role(*roles: str) -> Callable:
    """A view only these roles may open (others get 403)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def require_list_access(mailing_list: MailingList) -> None:
    """403 unless the signed-in account may manage this list (coordinators: own groups)."""
    if not current_user.may_manage(mailing_list):
        abort(403)


def visible_lists() -> list[MailingList]:
    """The lists the signed-in account may see."""
    if current_user.role == "coordinator":
        return sorted(current_user.lists, key=lambda m: m.id)
    return list(db.session.scalars(select(MailingList).order_by(MailingList.id)))


class CzechForm(FlaskForm):
    """Admin forms speak Czech, WTForms' own messages included ("Neplatná volba.")."""

    class Meta:
        locales = ("cs_CZ", "cs")


class LoginForm(CzechForm):
    email = EmailField("E-mail", validators=[DataRequired("Vyplňte e-mail."), Length(max=320)])
    password = PasswordField("Heslo", validators=[DataRequired("Vyplňte heslo."), Length(max=200)])


def _login_account_key() -> str:
    return "login-account:" + accounts.normalise_email(request.form.get("email", ""))[:320]


def _safe_next(target: str | None) -> str:
    """Only redirect within the admin after sign-in (no open redirect)."""
    if target and target.startswith("/admin") and not urlsplit(target).netloc:
        return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATE_LIMIT_LOGIN_IP"], methods=["POST"])
@limiter.limit(
    lambda: current_app.config["RATE_LIMIT_LOGIN_ACCOUNT"],
    methods=["POST"],
    key_func=_login_account_key,
)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is not None:
            db.session.commit()
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("Nesprávný e-mail nebo heslo.")
        status = 401
    elif request.method == "POST":
        status = 422
    return render_template("admin/login.html", form=form), status


@bp.post("/logout")
def logout():
    logout_user()
    flash("Byli jste odhlášeni.", "info")
    return redirect(url_for("admin.login"))
