"""HTTP views of the public subscription flow (DESIGN.md §5.4).

No GET changes anything: mail scanners fetch every link in a mail, so each
link opens a page with a button and only its POST acts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_limiter.errors import RateLimitExceeded

from .. import consent, suppression, tokens
from ..consent import RequestInfo
from ..errors import error_page, message_for
from ..extensions import db
from ..groups import membership
from ..groups.joining import MemberDetails, details_problems
from ..headers import vary_on
from ..i18n import current_language, use_person_language, valid_language
from ..institutions import institution_labels
from ..models import (
    ListKind,
    MailingList,
    Subscriber,
    SubscriptionStatus,
    SuppressionReason,
)
from ..request_values import bound
from ..signed_links import (
    LinkExpired,
    LinkProblem,
    SubscriberGone,
    load_link,
    render_link_problem,
)
from ..site import render_constant_page
from . import actions, rate_limits, signup
from .emails import personal_links, privacy_link_lifetime
from .forms import (
    NO_LIST_CHOSEN,
    UNKNOWN_LIST,
    SubscribeInput,
    UnreadableRequest,
    ValidatedSignup,
    error_codes,
    name_problem,
    validate,
)

bp = Blueprint("subscriptions", __name__)

bp.register_error_handler(LinkProblem, render_link_problem)


def _slugs(payload: dict) -> list[str]:
    slugs = payload.get("l")
    return [s for s in slugs if isinstance(s, str)] if isinstance(slugs, list) else []


# --- the form -----------------------------------------------------------------


def _offered_lists() -> tuple[list[MailingList], list[str], bool]:
    """The newsletters the form offers, those ticked at first, and whether ?list=… narrowed them.

    The form posts to /subscribe with the same ?list=…, so a form shown again
    after an error offers the same lists.
    """
    available = actions.public_newsletters()
    requested = request.args.getlist("list")
    if requested:
        chosen = [m for m in available if m.slug in requested]
        if chosen:
            return chosen, [m.slug for m in chosen], True
    default = current_app.config["DEFAULT_LIST"]
    return available, [default], False


def _render_form(
    *,
    embed: bool,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    lists: list[MailingList] | None = None,
    checked: list[str] | None = None,
) -> tuple[str, int]:
    offered, default_checked, narrowed = _offered_lists()
    return (
        render_template(
            "public/subscribe_embed.html" if embed else "public/subscribe.html",
            action=url_for(
                "subscriptions.subscribe", list=[m.slug for m in offered] if narrowed else None
            ),
            lists=lists if lists is not None else offered,
            checked=checked if checked is not None else default_checked,
            values=values or {},
            errors=errors or {},
            consent_text=consent.current_consent_text(),
            embed=embed,
        ),
        status,
    )


@bp.get("/subscribe")
def subscribe_page() -> ResponseReturnValue:
    return _render_form(embed=False)


@bp.get("/embed/subscribe")
def subscribe_embed() -> ResponseReturnValue:
    return _render_form(embed=True)


@bp.post("/subscribe")
def subscribe() -> ResponseReturnValue:
    """A sign-up: its rate limits and its hand-off cost one Redis round trip (two on an
    in-memory SQLite database), made once the answer is known (rate_limits.py); its row is
    stored in a transaction of its own (`_store`). Only accepted sign-ups count toward
    the address limit, and a refused one leaves no row (`_store` says in which order)."""
    try:
        data = SubscribeInput.from_request(bound(request))
    except UnreadableRequest as exc:
        rate_limits.check("", accepted=False)
        return jsonify(errors={"request": str(exc)}, codes={"request": "bad_request"}), 400

    if data.honeypot:
        # A bot filled the field people cannot see: answer as if it worked.
        rate_limits.check(data.email_text, accepted=True)
        return _accepted(data)

    valid, errors = validate(data)
    slugs = data.list_slugs
    if not slugs and not data.list_choice_shown:
        slugs = [current_app.config["DEFAULT_LIST"]]
    checked = False  # whether this request's limits were checked (and counted) already
    if valid is not None and not errors and len(set(slugs)) == 1:
        # The common sign-up, to one newsletter this process has seen: one INSERT that
        # checks the list itself (signup.record_request_for_known_list).
        list_id = signup.known_newsletter_id(slugs[0])
        if list_id is not None:
            if _store(data, _insert_for_known_list(data, valid, slugs[0], list_id)):
                return _accepted(data)
            # The list was renamed or deleted since: nothing written; looked up below.
            checked = signup.limits_before_storing()
    list_ids, unknown = signup.newsletter_ids(slugs)
    if not slugs:
        errors["list"] = str(NO_LIST_CHOSEN)
    elif unknown:
        errors["list"] = str(UNKNOWN_LIST)

    if errors or valid is None:
        if not checked:
            rate_limits.check(data.email_text, accepted=False)
        if data.is_json:
            return jsonify(errors=errors, codes=error_codes(errors)), 422
        return _render_form(
            embed=data.embed,
            status=422,
            values={"email": data.email_text, "name": data.name},
            errors=errors,
            checked=data.list_slugs,
        )

    # The same work for every address, known or not: one row, one job (signup.py says why).
    _store(data, _insert(data, valid, list_ids), checked=checked)
    return _accepted(data)


# How a sign-up is stored, given its transaction: the row's id, None when nothing was written.
Insert = Callable[[signup.Recording], int | None]


def _request_values(data: SubscribeInput) -> tuple[int, RequestInfo, str]:
    """The row's consent text id, request details and language, worked out before its
    transaction begins (`_store`): the consent text's id may need the ORM session (a text
    not yet stored is stored then)."""
    return consent.form_consent_text_id(data.consent_hash), _request_info(data), current_language()


def _insert(data: SubscribeInput, valid: ValidatedSignup, list_ids: list[int]) -> Insert:
    consent_text_id, info, language = _request_values(data)

    def insert(recording: signup.Recording) -> int:
        return recording.insert(
            valid.address, valid.name, list_ids, consent_text_id, info, language
        )

    return insert


def _insert_for_known_list(
    data: SubscribeInput, valid: ValidatedSignup, slug: str, list_id: int
) -> Insert:
    consent_text_id, info, language = _request_values(data)

    def insert(recording: signup.Recording) -> int | None:
        return recording.insert_for_known_list(
            slug, list_id, valid.address, valid.name, consent_text_id, info, language
        )

    return insert


def _store(data: SubscribeInput, insert: Insert, checked: bool = False) -> bool:
    """Store an accepted sign-up with `insert` (None: it wrote nothing), check its limits
    and hand it over; whether it was stored. A refused sign-up (RateLimited) leaves no row.

    The sign-up has a transaction of its own (`signup.recording`: one INSERT and its
    commit, without the ORM session); what it did not commit is rolled back.

    PostgreSQL: the INSERT, then the limits and the hand-off in one round trip inside the
    transaction, then the commit; a refused sign-up is rolled back. Inserts do not wait
    for each other there, and a refused request costs no commit.

    SQLite: the limits and the hand-off in one round trip first, then the INSERT and its
    commit. SQLite has one writer at a time: a transaction that stayed open across the
    Redis round trip held the write lock through it, and the other web processes' INSERTs
    slept in SQLite's busy handler (1, 2, 5, 10 … ms at a time) meanwhile (bench/README.md,
    sixth round). Instead the sign-up holds the sign-ups' lock file shared from the round
    trip to its commit, which the drain job waits for before it reads
    (`signup.in_flight`); without that file (an in-memory database) it hands over after
    the commit, in a second round trip. `checked`: the limits were checked already (by an
    earlier attempt of this request that wrote nothing): it hands over after the commit.
    """
    with signup.recording() as recording:
        if not signup.limits_before_storing():
            if insert(recording) is None:
                return False
            rate_limits.check(data.email_text, accepted=True, hand_off=True)
            recording.commit()
            return True
        with signup.in_flight() as waited_for:
            handed_over = waited_for and not checked
            if not checked:
                rate_limits.check(data.email_text, accepted=True, hand_off=handed_over)
            if insert(recording) is None:
                return False
            recording.commit()
    if not handed_over:
        rate_limits.hand_off()
    return True


def _request_info(data: SubscribeInput) -> RequestInfo:
    return RequestInfo.from_request(
        bound(request), "api" if data.is_json else ("embed" if data.embed else "page")
    )


@bp.errorhandler(RateLimitExceeded)
@bp.errorhandler(rate_limits.RateLimited)
def _too_many_signups(error: RateLimitExceeded | rate_limits.RateLimited) -> ResponseReturnValue:
    """The sixth attempt in a minute: the form again with what was typed and the reason (429)."""
    db.session.rollback()  # the sign-up's row, stored before its limits were checked
    message = message_for(429)
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    if request.endpoint != "subscriptions.subscribe":
        return error_page(429, message), 429, headers
    try:
        data = SubscribeInput.from_request(request)
    except UnreadableRequest:
        data = SubscribeInput(is_json=request.is_json)
    if data.is_json:
        return jsonify(errors={"request": message}, codes={"request": "rate_limited"}), 429, headers
    body, _ = _render_form(
        embed=data.embed,
        values={"email": data.email_text, "name": data.name},
        errors={"request": message},
        checked=data.list_slugs,
    )
    return body, 429, headers


def _accepted(data: SubscribeInput) -> ResponseReturnValue:
    if data.is_json:
        return jsonify(status=SubscriptionStatus.PENDING), 202
    # The same page for every address (issue 11, finding 8), so rendered once per language.
    template = "public/check_mailbox_embed.html" if data.embed else "public/check_mailbox.html"
    return render_constant_page(template), 202


@bp.after_request
def _limit_headers(response: Response) -> Response:
    """X-RateLimit-* of the limit a sign-up's check saw (rate_limits.py)."""
    return rate_limits.add_headers(response)


@bp.after_request
def _cors_for_website(response: Response) -> Response:
    """Let the programme's website post the form from its own pages (CORS)."""
    # By rule, not endpoint: the automatic OPTIONS (preflight) answer belongs
    # to whichever view of /subscribe was registered first.
    current = bound(request)  # read once, not through the proxy each time
    rule = current.url_rule
    if rule is None or rule.rule != "/subscribe":
        return response
    origin = current.environ.get("HTTP_ORIGIN")  # (cheaper than headers.get when absent)
    if origin and origin in current_app.config["EMBED_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
    vary_on(response, ("Origin",))
    return response


# --- confirmation -------------------------------------------------------------


@bp.get("/confirm/<token>")
def confirm(token: str) -> ResponseReturnValue:
    subscriber, payload = load_link("confirm", token, max_age=tokens.confirm_max_age())
    use_person_language(subscriber.language)
    lists = [
        s.mailing_list for s in subscriber.subscriptions if s.mailing_list.slug in _slugs(payload)
    ]
    return render_template("public/confirm.html", token=token, subscriber=subscriber, lists=lists)


@bp.post("/confirm/<token>")
def confirm_post(token: str) -> ResponseReturnValue:
    subscriber, payload = load_link("confirm", token, max_age=tokens.confirm_max_age())
    use_person_language(subscriber.language)
    info = RequestInfo.from_request(request, "link")
    confirmed = actions.confirm(subscriber, _slugs(payload), info)
    db.session.commit()
    return render_template(
        "public/confirmed.html",
        lists=confirmed,
        subscriber=subscriber,
        **personal_links(subscriber),
    )


@bp.post("/confirm/<token>/resend")
def confirm_resend(token: str) -> ResponseReturnValue:
    # An expired link still proves who it was sent to: its signature is checked.
    subscriber, payload = load_link("confirm", token)
    actions.resend_confirmation(subscriber, _slugs(payload))
    db.session.commit()
    return render_template("public/confirm_resent.html"), 202


# --- unsubscribe ----------------------------------------------------------------


@bp.get("/unsubscribe/<token>")
def unsubscribe(token: str) -> ResponseReturnValue:
    subscriber, payload = load_link("unsubscribe", token)
    use_person_language(subscriber.language)
    return render_template(
        "public/unsubscribe.html", token=token, mailing_list=_named_list(subscriber, payload)
    )


@bp.post("/unsubscribe/<token>")
def unsubscribe_post(token: str) -> ResponseReturnValue:
    """Unsubscribe at once; also the RFC 8058 one-click target (no cookie, no CSRF, 200)."""
    try:
        subscriber, payload = load_link("unsubscribe", token)
    except SubscriberGone:
        # Erased already: nothing is sent to them any more, which is what they asked.
        return render_template("public/unsubscribed.html", lists=[], gone=True)
    use_person_language(subscriber.language)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    info = RequestInfo.from_request(request, "one-click" if one_click else "link")
    list_slug = payload.get("l") if isinstance(payload.get("l"), str) else None
    left = actions.unsubscribe(subscriber, list_slug, info)
    db.session.commit()
    return render_template(
        "public/unsubscribed.html",
        lists=left,
        mailing_list=_named_list(subscriber, payload),
        gone=False,
        preferences_url=personal_links(subscriber)["preferences_url"],
    )


def _named_list(subscriber: Subscriber, payload: dict) -> MailingList | None:
    slug = payload.get("l")
    for subscription in subscriber.subscriptions:
        if subscription.mailing_list.slug == slug:
            return subscription.mailing_list
    return None


# --- preferences, export, erasure -----------------------------------------------


def _group_memberships(subscriber: Subscriber) -> list:
    """The working groups the subscriber is in or waits for: their details are editable here."""
    return sorted(
        (
            s
            for s in subscriber.subscriptions
            if s.mailing_list.kind == ListKind.GROUP
            and s.status in (SubscriptionStatus.CONFIRMED, SubscriptionStatus.REQUESTED)
        ),
        key=lambda s: s.mailing_list.name,
    )


def _preferences_page(
    token: str,
    subscriber: Subscriber,
    *,
    saved: bool = False,
    errors: dict[str, str] | None = None,
    group_errors: dict[str, dict[str, str]] | None = None,
    group_values: dict[str, MemberDetails] | None = None,
) -> str:
    active = {
        s.list_id
        for s in subscriber.subscriptions
        if s.status in (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED)
    }
    memberships = _group_memberships(subscriber)
    return render_template(
        "public/preferences.html",
        token=token,
        subscriber=subscriber,
        newsletters=actions.public_newsletters(),
        active=active,
        bounced=suppression.suppression_reason(subscriber.email_key) == SuppressionReason.BOUNCED,
        memberships=memberships,
        # What the form shows per group: as stored, or as typed when it came back with errors.
        member_values={
            s.mailing_list.slug: (group_values or {}).get(s.mailing_list.slug, s)
            for s in memberships
        },
        institution_types=institution_labels(),
        saved=saved,
        errors=errors or {},
        group_errors=group_errors or {},
    )


@bp.get("/preferences/<token>")
def preferences(token: str) -> ResponseReturnValue:
    subscriber, _ = load_link("preferences", token)
    use_person_language(subscriber.language)
    return _preferences_page(token, subscriber)


@bp.post("/preferences/<token>")
def preferences_post(token: str) -> ResponseReturnValue:
    subscriber, _ = load_link("preferences", token)
    use_person_language(subscriber.language)
    name = request.form.get("name", "").strip()
    problem = name_problem(name)
    # Groups whose fields were on the page that was posted: only those change, so
    # an older page (or a client posting newsletters only) leaves the rest alone.
    shown = set(request.form.getlist("group_shown"))
    group_updates = []
    group_errors: dict[str, dict[str, str]] = {}
    for subscription in _group_memberships(subscriber):
        slug = subscription.mailing_list.slug
        if slug not in shown:
            continue
        details = MemberDetails.from_form(request.form, prefix=f"g-{slug}-")
        problems = details_problems(details, required=False)
        if problems:
            group_errors[slug] = problems
        group_updates.append((subscription, details))
    if problem or group_errors:
        return _preferences_page(
            token,
            subscriber,
            errors={"name": problem} if problem else {},
            group_errors=group_errors,
            group_values={s.mailing_list.slug: d for s, d in group_updates},
        ), 422
    wanted, _unknown = actions.newsletters_by_slug(request.form.getlist("list"))
    info = RequestInfo.from_request(request, "preferences")
    actions.update_preferences(subscriber, name, wanted, info)
    # The language of their mails and pages; a page posted without the field keeps it.
    subscriber.language = valid_language(request.form.get("language")) or subscriber.language
    kept = set(request.form.getlist("group"))
    for subscription, details in group_updates:
        membership.update_details(
            subscription, details.organization, details.institution, details.function
        )
        slug = subscription.mailing_list.slug
        if subscription.status == SubscriptionStatus.CONFIRMED and slug not in kept:
            actions.unsubscribe(subscriber, slug, info)
    db.session.commit()
    use_person_language(subscriber.language)
    return _preferences_page(token, subscriber, saved=True)


# Export and erasure take only the short-lived link mailed on request (its own
# salt, PRIVACY_LINK_MAX_AGE): the preferences link is in every mail, so in every
# forwarded newsletter, and must not hand out someone's data or delete it.


class PrivacyLinkExpired(LinkExpired):
    template = "public/privacy_link_expired.html"


class PrivacyLinkNeeded(LinkProblem):
    """A preferences link used for export or erasure: offer to mail the short-lived one."""

    status = 403
    template = "public/privacy_link_needed.html"


def load_privacy_link(token: str) -> Subscriber:
    """The subscriber of a valid export/erase link; otherwise a LinkProblem page.

    An expired one offers a new link (410); a preferences link offers to mail
    one (403); anything else is an invalid link.
    """
    try:
        subscriber, _ = load_link(
            "privacy", token, max_age=tokens.privacy_max_age(), expired=PrivacyLinkExpired
        )
    except (PrivacyLinkExpired, SubscriberGone):
        raise
    except LinkProblem:
        load_link("preferences", token)  # raises its own LinkProblem when not one either
        raise PrivacyLinkNeeded(token) from None
    return subscriber


@bp.post("/preferences/<token>/privacy-link")
def preferences_privacy_link(token: str) -> ResponseReturnValue:
    """Mail a fresh export/erase link to the address (from the preferences page or an expired link).

    Either link proves only that it was once sent to the address; the new one
    goes to the mailbox, so only its holder can use it.
    """
    try:
        subscriber, _ = load_link("privacy", token)  # signature only: an expired one may ask
    except SubscriberGone:
        raise
    except LinkProblem:
        subscriber, _ = load_link("preferences", token)
    sent = actions.request_privacy_link(subscriber)
    db.session.commit()
    return render_template(
        "public/privacy_link_sent.html",
        sent=sent,
        subscriber=subscriber,
        lifetime=privacy_link_lifetime(),
    ), (202 if sent else 429)


@bp.get("/preferences/<token>/export")
def preferences_export(token: str) -> ResponseReturnValue:
    """A page with a download button; changes and hands out nothing (mail scanners fetch GETs)."""
    subscriber = load_privacy_link(token)
    use_person_language(subscriber.language)
    return render_template("public/export.html", token=token, subscriber=subscriber)


@bp.post("/preferences/<token>/export")
def preferences_export_post(token: str) -> ResponseReturnValue:
    subscriber = load_privacy_link(token)
    response = jsonify(actions.export(subscriber))
    response.headers["Content-Disposition"] = 'attachment; filename="zpravodaj-moje-udaje.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/preferences/<token>/erase")
def preferences_erase(token: str) -> ResponseReturnValue:
    subscriber = load_privacy_link(token)
    use_person_language(subscriber.language)
    return render_template("public/erase.html", token=token, subscriber=subscriber)


@bp.post("/preferences/<token>/erase")
def preferences_erase_post(token: str) -> ResponseReturnValue:
    try:
        subscriber = load_privacy_link(token)
    except SubscriberGone:
        return render_template("public/erased.html")
    actions.erase(subscriber)
    db.session.commit()
    return render_template("public/erased.html")
