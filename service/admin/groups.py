"""Working groups in the admin: details, coordinators, members, invitations, join requests.

Administrators see and manage every group and assign its coordinators;
a coordinator sees only their own groups (any other answers 403). Editors
get 403 too: members' details are the groups' business, and editors have
no part in them (DESIGN.md §2). Every change goes through
`groups.membership`, the same code the CLI and the public pages use.
"""

from __future__ import annotations

import io
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf.file import FileField
from sqlalchemy import func, select
from wtforms import (  # type: ignore[attr-defined]  # SelectChoice: new in 3.3, stubs at 3.2
    EmailField,
    Field,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length

from ..extensions import db
from ..groups import membership
from ..groups.membership import (
    MEMBER_STATUS_LABELS,
    VISIBILITY_LABELS,
    MembershipError,
)
from ..institutions import institution_labels
from ..lookalikes import as_shown
from ..models import (
    MailingList,
    Subscription,
    SubscriptionStatus,
    User,
    is_valid_slug,
)
from ..people_csv import ImportRefused, uploaded_text
from ..stored_messages import shown
from .auth import CzechForm, _l, account, require_list_access, require_role
from .blueprint import bp

group_managers = require_role("admin", "coordinator")

MEMBER_ACTIONS = {
    "approve": membership.approve,
    "decline": membership.decline,
    "remove": membership.remove,
}
# Flashed after a member action, `who` the person ("Jana Nováková (jana@…)").
MEMBER_ACTION_DONE = {
    "approve": _l("Žádost %(who)s je schválena; dostane o tom e-mail."),
    "decline": _l("Žádost %(who)s je zamítnuta; dostane o tom e-mail."),
    "remove": _l("%(who)s už ve skupině není."),
}


class GroupDetailsForm(CzechForm):
    name = StringField(
        _l("Název"), validators=[DataRequired(_l("Vyplňte název.")), Length(max=200)]
    )
    description = TextAreaField(_l("Popis"), validators=[Length(max=5000)])
    municipality = StringField(_l("Obec"), validators=[Length(max=120)])
    theme = StringField(_l("Téma"), validators=[Length(max=200)])
    department = StringField(_l("Organizující odbor"), validators=[Length(max=300)])
    meeting_place = StringField(_l("Místo setkání"), validators=[Length(max=300)])
    meeting_rhythm = StringField(_l("Obvyklý rytmus setkání"), validators=[Length(max=200)])
    visibility = SelectField(
        _l("Viditelnost"),
        choices=[SelectChoice(v, label) for v, label in VISIBILITY_LABELS.items()],
    )
    # The language of its announcements and of the fixed parts of its mails.
    language = SelectField(
        _l("Jazyk oznámení"),
        choices=[SelectChoice("cs", _l("čeština")), SelectChoice("en", _l("angličtina"))],
        default="cs",
    )


class NewGroupForm(GroupDetailsForm):
    """A new group: its details, the slug in its addresses, and its coordinators."""

    slug = StringField(
        _l("Zkratka do adresy"),
        validators=[DataRequired(_l("Vyplňte zkratku, např. ostrava-psb.")), Length(max=64)],
        description=_l("Malá písmena bez diakritiky, číslice a pomlčky; objeví se v odkazech."),
    )
    coordinators = SelectMultipleField(_l("Koordinátoři"), coerce=int, validate_choice=False)


class InviteForm(CzechForm):
    email = EmailField(
        _l("E-mail"), validators=[DataRequired(_l("Vyplňte e-mail pozvaného.")), Length(max=320)]
    )
    name = StringField(_l("Jméno"), validators=[Length(max=200)])
    organization = StringField(_l("Organizace"), validators=[Length(max=200)])
    # Checked by membership.clean_details; its choices are set per request (`invite_form`),
    # in the request's language.
    institution = SelectField(_l("Typ instituce"), validate_choice=False)
    function = StringField(_l("Funkce"), validators=[Length(max=200)])


def make_invite_form(formdata: Any = None) -> InviteForm:
    """The invitation form (of the request when `formdata` is given), institution types
    named in the request's language."""
    form = InviteForm(formdata=formdata) if formdata is not None else InviteForm(formdata=None)
    form.institution.choices = [
        SelectChoice("", _("– nevybráno –")),
        *(SelectChoice(v, label) for v, label in institution_labels().items()),
    ]
    return form


class InviteCsvForm(CzechForm):
    file = FileField(_l("Soubor CSV"))


def group_or_404(slug: str) -> MailingList:
    """The working group named in the URL, if the signed-in account may manage it (else 403)."""
    if not is_valid_slug(slug):
        abort(404)
    group = db.session.scalar(select(MailingList).filter_by(slug=slug, kind="group"))
    if group is None:
        abort(404)
    require_list_access(group)
    return group


def subscription_or_404(group: MailingList, subscription_id: int) -> Subscription:
    subscription = db.session.get(Subscription, subscription_id)
    if subscription is None or subscription.list_id != group.id:
        abort(404)
    return subscription


def _who(subscription: Subscription) -> str:
    person = subscription.subscriber
    return f"{person.name} ({person.email})" if person.name else person.email


# --- the list of groups -----------------------------------------------------------


@bp.get("/groups")
@group_managers
def groups() -> ResponseReturnValue:
    user = account()
    if user.role == "coordinator":
        shown = sorted(user.lists, key=lambda g: g.name)
    else:
        shown = list(
            db.session.scalars(
                select(MailingList).filter_by(kind="group").order_by(MailingList.name)
            )
        )
    counts: dict[tuple[int, str], int] = {}
    if shown:
        rows = db.session.execute(
            select(Subscription.list_id, Subscription.status, func.count())
            .where(Subscription.list_id.in_([g.id for g in shown]))
            .group_by(Subscription.list_id, Subscription.status)
        )
        counts = {(list_id, status): n for list_id, status, n in rows}
    return render_template(
        "admin/groups.html",
        groups=shown,
        counts=counts,
        visibility_labels=VISIBILITY_LABELS,
    )


# --- one group ----------------------------------------------------------------------


def render_group(
    group: MailingList,
    *,
    details_form: GroupDetailsForm | None = None,
    invite_form: InviteForm | None = None,
    csv_report: membership.InviteReport | None = None,
    csv_errors: list[str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    everyone = membership.members(group)
    coordinators = list(
        db.session.scalars(select(User).where(User.lists.contains(group)).order_by(User.email))
    )
    assignable = []
    if account().role == "admin":
        taken = {u.id for u in coordinators}
        assignable = [
            u
            for u in db.session.scalars(
                select(User).filter_by(role="coordinator", active=True).order_by(User.email)
            )
            if u.id not in taken
        ]
    return (
        render_template(
            "admin/group.html",
            group=group,
            requests=[s for s in everyone if s.status == SubscriptionStatus.REQUESTED],
            members=[s for s in everyone if s.status != SubscriptionStatus.REQUESTED],
            active_count=sum(1 for s in everyone if s.status == SubscriptionStatus.CONFIRMED),
            coordinators=coordinators,
            assignable=assignable,
            details_form=details_form or GroupDetailsForm(obj=group, formdata=None),
            invite_form=invite_form or make_invite_form(),
            csv_form=InviteCsvForm(formdata=None),
            csv_report=csv_report,
            csv_errors=csv_errors or [],
            institution_labels=institution_labels(),
            status_labels=MEMBER_STATUS_LABELS,
            visibility_labels=VISIBILITY_LABELS,
        ),
        status,
    )


def _new_group_form(formdata: Any = None) -> NewGroupForm:
    form = NewGroupForm(formdata=formdata) if formdata is not None else NewGroupForm(formdata=None)
    form.coordinators.choices = [
        SelectChoice(u.id, as_shown(u.email))
        for u in db.session.scalars(
            select(User).filter_by(role="coordinator", active=True).order_by(User.email)
        )
    ]
    return form


@bp.get("/groups/new")
@require_role("admin")
def group_new() -> ResponseReturnValue:
    """ "Nová skupina": the form with every detail and the coordinators to assign."""
    return render_template(
        "admin/group_new.html", form=_new_group_form(), visibility_labels=VISIBILITY_LABELS
    )


@bp.post("/groups/new")
@require_role("admin")
def group_create() -> ResponseReturnValue:
    form = _new_group_form(request.form)
    if form.validate():
        chosen = [db.session.get(User, i) for i in form.coordinators.data or []]
        try:
            group = membership.create_group(
                (form.slug.data or "").strip(),
                [u for u in chosen if u is not None],
                **{name: getattr(form, name).data or "" for name in membership.GROUP_FIELDS},
                visibility=form.visibility.data,
                language=form.language.data,
            )
        except MembershipError as exc:
            _show_refusal(form, exc, form.slug)
        else:
            db.session.commit()
            flash(_("Skupina je založena: %(name)s.", name=group.name), "success")
            return redirect(url_for("admin.group", slug=group.slug))
    db.session.rollback()
    return render_template(
        "admin/group_new.html", form=form, visibility_labels=VISIBILITY_LABELS
    ), 422


@bp.get("/groups/<slug>")
@group_managers
def group(slug: str) -> ResponseReturnValue:
    return render_group(group_or_404(slug))


@bp.post("/groups/<slug>/details")
@group_managers
def group_details(slug: str) -> ResponseReturnValue:
    group = group_or_404(slug)
    form = GroupDetailsForm()
    if form.validate():
        try:
            membership.update_group(
                group,
                **{name: getattr(form, name).data or "" for name in membership.GROUP_FIELDS},
                visibility=form.visibility.data,
                language=form.language.data,
            )
        except MembershipError as exc:
            _show_refusal(form, exc, form.name)
        else:
            db.session.commit()
            flash(_("Údaje skupiny jsou uloženy."), "success")
            return redirect(url_for("admin.group", slug=group.slug))
    db.session.rollback()
    return render_group(group, details_form=form, status=422)


@bp.post("/groups/<slug>/invite")
@group_managers
def group_invite(slug: str) -> ResponseReturnValue:
    group = group_or_404(slug)
    form = make_invite_form(request.form)
    if form.validate():
        try:
            subscription = membership.invite(
                group,
                form.email.data or "",
                form.name.data or "",
                form.organization.data or "",
                form.institution.data or "",
                form.function.data or "",
                invited_by=account(),
            )
        except MembershipError as exc:
            db.session.rollback()
            _show_refusal(form, exc, form.email)
            form.institution.data = form.institution.data or ""
        else:
            db.session.commit()
            flash(
                _(
                    "Pozvánka pro %(email)s je na cestě.",
                    email=as_shown(subscription.subscriber.email),
                ),
                "success",
            )
            return redirect(url_for("admin.group", slug=group.slug))
    return render_group(group, invite_form=form, status=422)


def _show_refusal(form: CzechForm, refusal: MembershipError, default: Field) -> None:
    """Show a membership refusal under the form field it is about (else under `default`)."""
    field = form._fields.get(refusal.field or "", default)
    field.errors = [*field.errors, str(refusal)]


@bp.post("/groups/<slug>/invite-csv")
@group_managers
def group_invite_csv(slug: str) -> ResponseReturnValue:
    group = group_or_404(slug)
    form = InviteCsvForm()
    try:
        text = uploaded_text(form.file.data, _("Vyberte soubor CSV s pozvanými."))
        report = membership.invite_csv(group, io.StringIO(text, newline=""), account())
    except (ImportRefused, MembershipError) as exc:
        db.session.rollback()
        # people_csv's refusals are kept in Czech (stored_messages); shown in the reader's.
        return render_group(group, csv_errors=[shown(str(exc))], status=422)
    db.session.commit()
    return render_group(group, csv_report=report)


@bp.post("/groups/<slug>/members/<int(max=2147483647):subscription_id>/<action>")
@group_managers
def group_member(slug: str, subscription_id: int, action: str) -> ResponseReturnValue:
    if action not in MEMBER_ACTIONS:
        abort(404)
    group = group_or_404(slug)
    subscription = subscription_or_404(group, subscription_id)
    try:
        changed = MEMBER_ACTIONS[action](group, subscription, account())
    except MembershipError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.group", slug=group.slug))
    db.session.commit()
    if changed:
        flash(str(MEMBER_ACTION_DONE[action]) % {"who": _who(subscription)}, "success")
    else:
        flash(_("Nic se nezměnilo: to už je hotové."), "info")
    return redirect(url_for("admin.group", slug=group.slug))


@bp.post("/groups/<slug>/coordinators")
@require_role("admin")
def group_coordinators(slug: str) -> ResponseReturnValue:
    """Assign (`add`) or unassign (`remove`) an existing coordinator account."""
    group = group_or_404(slug)
    user_id = request.form.get("user_id", "")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() and len(user_id) < 10 else None
    if user is None or user.role != "coordinator":
        flash(_("Vyberte účet koordinátora."), "error")
        return redirect(url_for("admin.group", slug=group.slug))
    if request.form.get("action") == "remove":
        if group in user.lists:
            user.lists.remove(group)
        flash(_("%(email)s už skupinu nekoordinuje.", email=as_shown(user.email)), "success")
    else:
        if group not in user.lists:
            user.lists.append(group)
        flash(_("%(email)s teď skupinu koordinuje.", email=as_shown(user.email)), "success")
    db.session.commit()
    return redirect(url_for("admin.group", slug=group.slug))
