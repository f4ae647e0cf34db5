"""Signing in and out, and who may see what.

Flask-Login keeps the session (cookie flags from the config: HttpOnly,
SameSite=Lax, Secure behind https). A session names its account *and* the
account's session generation (`User.session_generation`): signing out,
changing the password and disabling the account raise the generation, so
every session of the account ends at once, a cookie copied elsewhere
included. Sessions are "permanent" with a lifetime of ADMIN_SESSION_HOURS
and re-signed on every request, so one unused that long is refused by its
own signature timestamp (see `_derive_extension_config`).

Sign-in is throttled per client address and per account and client address,
with a growing delay for one client that keeps failing: service/admin/throttling.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast
from urllib.parse import urlsplit

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, Field, PasswordField
from wtforms import i18n as wtforms_i18n
from wtforms.validators import DataRequired, EqualTo, Length

from .. import accounts
from ..extensions import db
from ..i18n import current_language
from ..models import MailingList, User
from ..web_extensions import csrf, limiter, login_manager
from . import navigation, throttling
from .blueprint import bp

__all__ = ["account", "login_required", "require_list_access", "require_role"]


def _l(message: str, **variables: Any) -> str:
    """Flask-Babel's `lazy_gettext`, typed as the `str` WTForms and Flask-Login take: a label
    or message made once at import and translated each time it is shown, in that request's
    language. (Named `_l` so that the README's `pybabel extract -k _l` finds it.)"""
    return cast(str, lazy_gettext(message, **variables))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = _l("Pro pokračování se přihlaste.")
    login_manager.login_message_category = "info"
    # A stolen session cookie used from elsewhere is dropped.
    login_manager.session_protection = "strong"
    csrf.init_app(app)

    navigation.init_app(app)


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    """The account of a session, unless the session is of an older generation."""
    user_id, _, generation = session_id.partition(":")
    if not user_id.isdigit() or not generation.isdigit():
        return None  # malformed, or a session from before generations existed
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_generation != int(generation):
        return None
    return user


@bp.before_request
def _guard() -> Any:
    """CSRF for every POST of the blueprint; sign-in for every view but the login page."""
    if request.endpoint == "admin.login":
        return None  # its form checks the CSRF token and says "expired" in its page's language
    if request.method == "POST":
        csrf.protect()
    if accounts.signed_in_user() is None:
        return login_manager.unauthorized()
    return None


def account() -> User:
    """The account of an admin view: `_guard` lets none run without one."""
    user = accounts.signed_in_user()
    if user is None:
        abort(401)
    return user


def require_role(*roles: str) -> Callable:
    """A view only these roles may open (others get 403)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if account().role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def require_list_access(mailing_list: MailingList) -> None:
    """403 unless the signed-in account may manage this list (coordinators: own groups)."""
    if not account().may_manage(mailing_list):
        abort(403)


def visible_lists() -> list[MailingList]:
    """The lists the signed-in account may see."""
    user = account()
    if user.role == "coordinator":
        return sorted(user.lists, key=lambda m: m.id)
    return list(db.session.scalars(select(MailingList).order_by(MailingList.id)))


# WTForms' own catalogues per language of the admin ("Neplatná volba." / "Not a valid choice.").
_WTFORMS_LOCALES = {"cs": ("cs_CZ", "cs"), "en": ("en",)}


class CzechForm(FlaskForm):
    """Admin forms speak the request's language (Czech by default), WTForms' own messages
    included ("Neplatná volba."); the name stays for the views that import it."""

    class Meta:
        def get_translations(self, form: Any) -> Any:
            locales = _WTFORMS_LOCALES.get(current_language(), _WTFORMS_LOCALES["cs"])
            return wtforms_i18n.get_translations(locales)


def _add_error(field: Field, message: str) -> None:
    """Show `message` under `field`, after the errors of its validators."""
    field.errors = [*field.errors, message]


class LoginForm(CzechForm):
    email = EmailField(
        _l("E-mail"), validators=[DataRequired(_l("Vyplňte e-mail.")), Length(max=320)]
    )
    password = PasswordField(
        _l("Heslo"), validators=[DataRequired(_l("Vyplňte heslo.")), Length(max=200)]
    )


def _login_account_key() -> str:
    """Per account *and* client address: a guesser elsewhere cannot lock the owner out."""
    email = accounts.normalise_email(request.form.get("email", ""))[:320]
    return f"login-account:{email}|{throttling.client_address()}"


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
    # Only refused attempts count: the owner signing in often is no guesser.
    deduct_when=lambda response: response.status_code != 302,
)
def login() -> ResponseReturnValue:
    if accounts.signed_in_user() is not None:
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        email = accounts.normalise_email(form.email.data or "")
        client = throttling.client_address()
        if wait := throttling.wait_seconds(email, client):
            # Not even checked: a guesser learns nothing while waiting. (Flask-Limiter
            # puts its own Retry-After on every 429; the page says the real wait.)
            _add_error(form.password, _wait_message(wait))
            return render_template("admin/login.html", form=form), 429
        user = accounts.authenticate(email, form.password.data or "")
        if user is not None:
            db.session.commit()
            throttling.record_success(email, client)
            _start_session(user)
            return redirect(_safe_next(request.args.get("next")))
        throttling.record_failure(email, client, accounts.find_user(email))
        _add_error(form.password, _("Nesprávný e-mail nebo heslo."))
        status = 401
    elif request.method == "POST":
        status = 422
    return render_template("admin/login.html", form=form), status


def _wait_message(seconds: int) -> str:
    wait = f"{seconds} s" if seconds < 60 else f"{-(-seconds // 60)} min"
    return _(
        "Příliš mnoho neúspěšných pokusů o přihlášení k tomuto účtu odsud. "
        "Zkuste to prosím znovu za %(wait)s.",
        wait=wait,
    )


def _start_session(user: User) -> None:
    """Sign `user` in on this browser, with the account's current generation."""
    login_user(user)
    # Permanent: the cookie is re-signed on every request and expires after
    # ADMIN_SESSION_HOURS without one (PERMANENT_SESSION_LIFETIME).
    session.permanent = True


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out everywhere: a copy of this session's cookie stops working too."""
    accounts.end_sessions(account())
    db.session.commit()
    logout_user()
    flash(_("Byli jste odhlášeni."), "info")
    return redirect(url_for("admin.login"))


class PasswordChangeForm(CzechForm):
    current = PasswordField(
        _l("Současné heslo"),
        validators=[DataRequired(_l("Vyplňte současné heslo.")), Length(max=200)],
    )
    password = PasswordField(
        _l("Nové heslo"), validators=[DataRequired(_l("Vyplňte nové heslo.")), Length(max=200)]
    )
    password_again = PasswordField(
        _l("Nové heslo znovu"), validators=[EqualTo("password", _l("Hesla se neshodují."))]
    )


@bp.route("/password", methods=["GET", "POST"])
def password() -> ResponseReturnValue:
    """Change one's own password; every other session of the account ends."""
    form = PasswordChangeForm()
    status = 200
    if form.validate_on_submit():
        user = account()
        if not accounts.check_password(user, form.current.data or ""):
            _add_error(form.current, _("Současné heslo nesouhlasí."))
            status = 422
        else:
            try:
                accounts.set_password(user, form.password.data or "")
            except accounts.AccountError as exc:
                _add_error(form.password, str(exc))
                status = 422
            else:
                db.session.commit()
                _start_session(user)  # this browser stays signed in, with the new generation
                flash(
                    _("Heslo je změněno. Přihlášení na ostatních zařízeních skončila."), "success"
                )
                return redirect(url_for("admin.dashboard"))
    elif form.is_submitted():
        status = 422
    return render_template("admin/password.html", form=form), status
