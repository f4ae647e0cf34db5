"""Public and members' pages of working groups.

As in the subscription flow, no GET changes anything (mail scanners fetch
every link): each link in a mail opens a page with a button, its POST acts.
"""

from __future__ import annotations

import io
from functools import partial
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import Select, func, select

from .. import consent, tokens
from ..addresses import (
    INVALID_ADDRESS_MESSAGE,
    InvalidAddress,
    address_hash,
    parse_address_for_app,
)
from ..archive.dates import czech_date, local_date
from ..clock import utcnow
from ..consent import RequestInfo
from ..database import commit_with_retry
from ..extensions import db
from ..i18n import use_person_language
from ..institutions import institution_labels
from ..issues.markdown import markdown_to_html
from ..meetings import attendance, occurrences, recurrence, rsvp
from ..meetings.calendar import CALENDAR_CONTENT_TYPE, documents, feed_for
from ..models import (
    Attachment,
    Issue,
    MailingList,
    Meeting,
    PartStat,
    Subscriber,
    SubscriptionStatus,
)
from ..signed_links import (
    LinkExpired,
    LinkProblem,
    SubscriberGone,
    load_link,
    render_link_problem,
)
from ..subscriptions.emails import personal_links
from ..subscriptions.forms import name_problem
from ..web_extensions import limiter
from . import joining
from .dates import format_meeting_time

bp = Blueprint("groups", __name__, url_prefix="/groups")

# Announcements a member sees: what went (or is going) out, never drafts.
SENT_STATUSES = Issue.PUBLISHED
MEMBER_PAGE_ANNOUNCEMENTS = 50


class JoinLinkExpired(LinkExpired):
    """An expired join link: the visitor asks again from the group page (nothing to resend)."""

    template = "groups/join_link_expired.html"


class InvitationExpired(LinkExpired):
    """An expired invitation: only the coordinator can send a new one."""

    template = "groups/invitation_expired.html"


bp.register_error_handler(LinkProblem, render_link_problem)


def _load(purpose: str, token: str, max_age: int | None = None) -> tuple[Subscriber, dict]:
    """The subscription flow's signed-link check, with the groups' own expiry pages; the
    page that follows speaks the person's stored language (unless ?lang= says otherwise)."""
    subscriber, payload = load_link(purpose, token, max_age=max_age, expired=_expired(purpose))
    use_person_language(subscriber.language)
    return subscriber, payload


def _expired(purpose: str) -> type[LinkExpired]:
    return {"confirm": JoinLinkExpired, "invite": InvitationExpired}.get(purpose, LinkExpired)


def _linked_group(payload: dict, token: str) -> MailingList:
    """The group a link names; a group deleted since the mail was sent reads as gone."""
    slug = payload.get("l")
    if not isinstance(slug, str):
        raise LinkProblem(token)
    group = joining.group_by_slug(slug)
    if group is None:
        raise SubscriberGone(token)
    return group


# --- the public page and the join request ------------------------------------------


def _ip_limit() -> str:
    return current_app.config["RATE_LIMIT_SUBSCRIBE_IP"]


def _address_limit() -> str:
    return current_app.config["RATE_LIMIT_SUBSCRIBE_ADDRESS"]


def _address_rate_key() -> str:
    """Rate-limit key of the address asking to join (lower-cased as typed), hashed as
    the sign-up's is: no addresses in Redis."""
    return "join-address:" + address_hash(request.form.get("email", "").strip().casefold() or "-")


def _group_page(
    group: MailingList,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> tuple[str, int]:
    return (
        render_template(
            "groups/group.html",
            group=group,
            institution_types=institution_labels(),
            values=values or {},
            errors=errors or {},
            consent_text=consent.current_text("group_consent"),
        ),
        status,
    )


@bp.get("/")
def index() -> ResponseReturnValue:
    """The publicly listed groups, each with its join form."""
    return render_template("groups/index.html", groups=joining.public_groups())


@bp.get("/<slug>")
def group_page(slug: str) -> ResponseReturnValue:
    group = joining.public_group(slug)
    if group is None:
        abort(404)
    return _group_page(group)


@bp.post("/<slug>/join")
@limiter.limit(_ip_limit, methods=["POST"])
@limiter.limit(_address_limit, key_func=_address_rate_key, methods=["POST"])
def join(slug: str) -> ResponseReturnValue:
    group = joining.public_group(slug)
    if group is None:
        abort(404)
    form = request.form
    if form.get("website", ""):
        # A bot filled the field people cannot see: answer as if it worked.
        return render_template("groups/join_requested.html", group=group), 202

    errors: dict[str, str] = {}
    address = None
    try:
        address = parse_address_for_app(form.get("email", ""))
    except InvalidAddress:
        errors["email"] = str(INVALID_ADDRESS_MESSAGE)
    name = form.get("name", "").strip()
    problem = name_problem(name)
    if problem:
        errors["name"] = problem
    details = joining.MemberDetails.from_form(form)
    errors.update(joining.details_problems(details, required=True))
    if errors or address is None:
        values = {
            "email": form.get("email", ""),
            "name": form.get("name", ""),
            "organization": details.organization,
            "institution": details.institution,
            "function": details.function,
        }
        return _group_page(group, status=422, values=values, errors=errors)

    consent_text = consent.consent_text_by_hash(form.get("consent"), "group_consent") or (
        consent.current_text("group_consent")
    )
    info = RequestInfo.from_request(request, "page")
    commit_with_retry(
        partial(joining.request_to_join, address, name, group, details, info, consent_text)
    )
    return render_template("groups/join_requested.html", group=group), 202


# --- confirming the address of a join request -------------------------------------------


def _load_join(token: str) -> tuple[Subscriber, MailingList]:
    subscriber, payload = _load("confirm", token, max_age=tokens.confirm_max_age())
    if payload.get("j") != 1:
        raise LinkProblem(token)
    return subscriber, _linked_group(payload, token)


@bp.get("/join/<token>")
def confirm_join(token: str) -> ResponseReturnValue:
    subscriber, group = _load_join(token)
    return render_template(
        "groups/confirm_join.html",
        token=token,
        group=group,
        subscriber=subscriber,
        membership=joining.membership_of(subscriber, group),
    )


@bp.post("/join/<token>")
def confirm_join_post(token: str) -> ResponseReturnValue:
    subscriber, group = _load_join(token)
    joining.confirm_join(subscriber, group, RequestInfo.from_request(request, "link"))
    db.session.commit()
    return render_template(
        "groups/join_confirmed.html",
        group=group,
        subscriber=subscriber,
        membership=joining.membership_of(subscriber, group),
        **personal_links(subscriber),
    )


# --- accepting an invitation ------------------------------------------------------------


def _invite_max_age() -> int | None:
    days = current_app.config.get("INVITE_TOKEN_MAX_AGE_DAYS")
    return int(days) * 24 * 3600 if days else None


def _load_invitation(token: str) -> tuple[Subscriber, MailingList]:
    subscriber, payload = _load("invite", token, max_age=_invite_max_age())
    return subscriber, _linked_group(payload, token)


@bp.get("/invitation/<token>")
def invitation(token: str) -> ResponseReturnValue:
    subscriber, group = _load_invitation(token)
    return render_template(
        "groups/invitation.html",
        token=token,
        group=group,
        subscriber=subscriber,
        membership=joining.membership_of(subscriber, group),
        member_page_url=joining.member_page_url(subscriber, group),
    )


@bp.post("/invitation/<token>")
def invitation_post(token: str) -> ResponseReturnValue:
    subscriber, group = _load_invitation(token)
    joining.accept_invitation(subscriber, group, RequestInfo.from_request(request, "link"))
    db.session.commit()
    membership = joining.membership_of(subscriber, group)
    if membership is None or membership.status != SubscriptionStatus.CONFIRMED:
        # Left, declined or removed meanwhile: the same explanation as the GET.
        return render_template(
            "groups/invitation.html",
            token=token,
            group=group,
            subscriber=subscriber,
            membership=membership,
        ), 409
    return render_template(
        "groups/invitation_accepted.html",
        group=group,
        subscriber=subscriber,
        member_page_url=joining.member_page_url(subscriber, group),
        **personal_links(subscriber),
    )


# --- the members' page ----------------------------------------------------------------


@bp.get("/<slug>/member/<token>")
def member_page(slug: str, token: str) -> ResponseReturnValue:
    """Past announcements and the next meeting, for confirmed members (preferences token)."""
    group = joining.group_by_slug(slug)
    if group is None:
        abort(404)
    subscriber, _ = _load("preferences", token)
    membership = joining.membership_of(subscriber, group)
    if membership is None or membership.status != SubscriptionStatus.CONFIRMED:
        return render_template("groups/members_only.html", group=group), 403

    zone = current_app.config["TIMEZONE"]
    issues = db.session.scalars(
        select(Issue)
        .where(Issue.list_id == group.id, Issue.status.in_(SENT_STATUSES))
        .order_by(func.coalesce(Issue.started_at, Issue.created_at).desc(), Issue.id.desc())
        .limit(MEMBER_PAGE_ANNOUNCEMENTS)
    )
    announcements = [_announcement(issue, group, token, zone, subscriber) for issue in issues]
    next_meeting = _next_meeting(group, zone, subscriber)
    feed_url = joining.calendar_feed_url(subscriber, group)
    return render_template(
        "groups/member.html",
        group=group,
        subscriber=subscriber,
        announcements=announcements,
        next_meeting=next_meeting,
        calendar_feed_url=feed_url,
        webcal_url=joining.webcal_url(feed_url),
        **personal_links(subscriber),
    )


NEXT_OCCURRENCES = 4


def _announcement(
    issue: Issue, group: MailingList, token: str, zone: str, subscriber: Subscriber
) -> dict[str, Any]:
    """One sent announcement on the members' page; minutes with their meeting's record
    and the member's own answer and attendance."""
    item: dict[str, Any] = {
        "subject": issue.subject,
        "date": czech_date(local_date(issue.started_at or issue.created_at, zone)),
        "body_html": markdown_to_html(issue.body),
        # Reachable only through this member's signed link (`document`).
        "documents": [
            {
                "filename": a.filename,
                "url": url_for("groups.document", slug=group.slug, token=token, document_id=a.id),
            }
            for a in documents(issue)
        ],
        "minutes": None,
    }
    meeting = issue.meeting
    if meeting is not None and issue.meeting_method is None:  # minutes of a meeting
        key = issue.meeting_occurrence  # of one date of a series
        date = occurrences.find(meeting, key) if key is not None else None
        held = date or occurrences.Occurrence(
            meeting.id, meeting.start, meeting.start, meeting.end, meeting.location,
            meeting.online_url, meeting.agenda, meeting.sequence, False, False,
        )  # fmt: skip
        people = attendance.attendees(meeting, key)
        item["minutes"] = {
            "when": format_meeting_time(held.start, held.end, zone),
            "agenda_html": markdown_to_html(held.agenda) if held.agenda else "",
            "counts": attendance.counts(meeting, key),
            "came": sum(1 for a in people if a.attended),
            "ticked": any(a.attended is not None for a in people),
            "invited": len(people),
            "mine": _own_attendance(people, subscriber),
        }
    return item


@bp.get("/<slug>/member/<token>/documents/<int(max=2147483647):document_id>")
def document(slug: str, token: str, document_id: int) -> ResponseReturnValue:
    """A document of the group's announcements, for its confirmed members only."""
    group = joining.group_by_slug(slug)
    if group is None:
        abort(404)
    subscriber, _ = _load("preferences", token)
    membership = joining.membership_of(subscriber, group)
    if membership is None or membership.status != SubscriptionStatus.CONFIRMED:
        return render_template("groups/members_only.html", group=group), 403
    found = db.session.get(Attachment, document_id)
    issue = db.session.get(Issue, found.issue_id) if found is not None else None
    if (
        found is None
        or issue is None
        or issue.list_id != group.id
        or issue.status not in SENT_STATUSES
        or found.content_type == CALENDAR_CONTENT_TYPE
    ):
        abort(404)
    # send_file writes a non-ASCII file name as RFC 5987 `filename*`.
    return send_file(
        io.BytesIO(found.data),
        mimetype=found.content_type,
        as_attachment=True,
        download_name=found.filename,
    )


def _next_meeting(group: MailingList, zone: str, subscriber: Subscriber) -> dict | None:
    """The group's next announced meeting for its members' page (a series with its next
    dates), with the member's own answer and the link to give or change it."""
    now = utcnow()
    candidates = db.session.scalars(
        select(Meeting).where(
            Meeting.list_id == group.id,
            Meeting.id.in_(_announced_meetings(group)),
            Meeting.cancelled_at.is_(None),
            (Meeting.start > now) | (Meeting.rrule != ""),
        )
    )
    upcoming = []
    for meeting in candidates:
        dates = occurrences.upcoming(meeting, after=now, count=NEXT_OCCURRENCES)
        if dates:
            upcoming.append((dates[0].start, meeting.id, meeting, dates))
    if not upcoming:
        return None
    _, _, meeting, dates = min(upcoming)
    date = dates[0]
    return {
        "when": format_meeting_time(date.start, date.end, zone),
        "rhythm": recurrence.describe(meeting.rrule, meeting.start, zone) if meeting.rrule else "",
        "later": [_later(later, date, zone) for later in dates[1:]],
        "location": date.location,
        # Typed by a coordinator: a link only when it is a web address.
        "online_url": date.online_url
        if date.online_url.startswith(("https://", "http://"))
        else "",
        "agenda_html": markdown_to_html(date.agenda) if date.agenda else "",
        "answer": _own_answer(meeting, subscriber, date),
    }


def _later(date: occurrences.Occurrence, first: occurrences.Occurrence, zone: str) -> str:
    """A later date of the series; its place when it differs from the next one's."""
    when = format_meeting_time(date.start, date.end, zone)
    return f"{when}, {date.location}" if date.location != first.location else when


def _own_attendance(people: list[attendance.Attendee], subscriber: Subscriber) -> str:
    """What the minutes say of the member: whether the sheet has them, else their answer."""
    mine = next((a for a in people if a.subscriber_id == subscriber.id), None)
    if mine is None:
        return ""
    if mine.attended is not None:
        return (
            _("Podle prezenční listiny jste se setkání zúčastnili.")
            if mine.attended
            else _("Podle prezenční listiny jste na setkání nebyli.")
        )
    if mine.partstat == PartStat.NEEDS_ACTION:
        return ""
    return _("Vaše odpověď: %(answer)s.", answer=rsvp.LABELS[PartStat(mine.partstat)])


def _own_answer(
    meeting: Meeting, subscriber: Subscriber, date: occurrences.Occurrence
) -> dict[str, Any]:
    """The member's answer for the next date and their /rsvp/ page to give or change it
    (for a series, the page of that date)."""
    recurrence_id = date.recurrence_id if meeting.rrule else None
    response = rsvp.answer_for(meeting, subscriber, recurrence_id)
    partstat = PartStat(response.partstat) if response is not None else PartStat.NEEDS_ACTION
    token = rsvp.rsvp_token(subscriber.public_key, meeting.id, recurrence_id)
    return {
        "answered": partstat != PartStat.NEEDS_ACTION,
        "label": rsvp.LABELS[partstat],
        "note": response.note if response is not None else "",
        "url": url_for("rsvp.answer", token=token),
    }


@bp.get("/<slug>/calendar/<token>.ics")
def calendar_feed(slug: str, token: str) -> ResponseReturnValue:
    """A member's subscribed calendar of the group's meetings (METHOD:PUBLISH).

    Checked on every fetch: once the member leaves (or is removed), the feed
    answers 404 like an unknown one, and the calendar app drops the meetings.
    """
    group = joining.group_by_slug(slug)
    try:
        subscriber, payload = load_link("calendar", token)
    except LinkProblem:
        abort(404)
    member = joining.membership_of(subscriber, group) if group is not None else None
    if (
        group is None
        or payload.get("l") != group.slug
        or member is None
        or member.status != SubscriptionStatus.CONFIRMED
    ):
        abort(404)
    meetings = list(
        db.session.scalars(
            select(Meeting)
            .where(Meeting.list_id == group.id, Meeting.id.in_(_announced_meetings(group)))
            .order_by(Meeting.start)
        )
    )
    return Response(
        feed_for(group, meetings),
        mimetype="text/calendar",
        headers={
            "Content-Disposition": f'inline; filename="{group.slug}.ics"',
            "Cache-Control": "private, no-store",
        },
    )


def _announced_meetings(group: MailingList) -> Select[Any]:
    """Meetings whose invitation went out (a draft's meeting is nobody's business yet)."""
    return select(Issue.meeting_id).where(
        Issue.list_id == group.id,
        Issue.meeting_id.is_not(None),
        Issue.status.in_(SENT_STATUSES),
    )
