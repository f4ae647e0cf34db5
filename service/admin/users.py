"""Accounts: administrators create editors, coordinators and other admins, assign a
coordinator's groups, and deactivate accounts (kept, not deleted: issues name
their author)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select
from wtforms import (  # type: ignore[attr-defined]  # SelectChoice: new in 3.3, stubs at 3.2
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
)
from wtforms.validators import DataRequired, EqualTo, Length

from .. import accounts
from ..extensions import db
from ..lookalikes import as_shown
from ..models import MailingList, User
from . import throttling
from .auth import CzechForm, _l, account, require_role
from .blueprint import bp

ROLE_LABELS = {
    "admin": _l("administrátor"),
    "editor": _l("redaktor"),
    "coordinator": _l("koordinátor skupin"),
}


class UserForm(CzechForm):
    email = EmailField(
        _l("E-mail"), validators=[DataRequired(_l("Vyplňte e-mail.")), Length(max=320)]
    )
    role = SelectField(
        _l("Role"), choices=[SelectChoice(v, label) for v, label in ROLE_LABELS.items()]
    )
    lists = SelectMultipleField(_l("Skupiny (jen pro koordinátory)"), coerce=int, choices=[])
    password = PasswordField(
        _l("Heslo"), validators=[DataRequired(_l("Zadejte heslo nového účtu.")), Length(max=200)]
    )
    password_again = PasswordField(
        _l("Heslo znovu"),
        validators=[EqualTo("password", _l("Hesla se neshodují."))],
    )


def _group_choices() -> list[SelectChoice]:
    groups = db.session.scalars(
        select(MailingList).where(MailingList.kind == "group").order_by(MailingList.name)
    )
    return [SelectChoice(g.id, f"{g.name} ({g.slug})") for g in groups]


@bp.route("/users", methods=["GET", "POST"])
@require_role("admin")
def users() -> ResponseReturnValue:
    form = UserForm()
    form.lists.choices = _group_choices()
    status = 200
    if form.validate_on_submit():
        chosen = list(
            db.session.scalars(select(MailingList).where(MailingList.id.in_(form.lists.data or [])))
        )
        try:
            user = accounts.create_user(
                form.email.data or "", form.password.data or "", form.role.data, chosen or None
            )
        except accounts.AccountError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
            status = 422
        else:
            db.session.commit()
            flash(_("Účet %(email)s je vytvořen.", email=as_shown(user.email)), "success")
            return redirect(url_for("admin.users"))
    elif form.is_submitted():
        status = 422
    everyone = db.session.scalars(select(User).order_by(User.email)).all()
    return (
        render_template(
            "admin/users.html",
            form=form,
            users=everyone,
            role_labels=ROLE_LABELS,
            failed_sign_ins=throttling.failures_last_day([u.id for u in everyone]),
        ),
        status,
    )


@bp.post("/users/<int(max=2147483647):user_id>/active")
@require_role("admin")
def user_toggle_active(user_id: int) -> ResponseReturnValue:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    if user.id == account().id:
        flash(_("Vlastní účet vypnout nelze."), "error")
        return redirect(url_for("admin.users"))
    accounts.set_active(user, not user.active)  # disabling ends the account's sessions
    db.session.commit()
    email = as_shown(user.email)
    if user.active:
        flash(_("Účet %(email)s je znovu zapnutý.", email=email), "success")
    else:
        flash(_("Účet %(email)s je vypnutý.", email=email), "success")
    return redirect(url_for("admin.users"))
