"""Archive views: the list of published issues, one issue, and the list's Atom feed.

An issue is public once it started going out (DESIGN.md §5.4). Only the
issue's body is shown, never the mail around it, so no personal link
(unsubscribe, preferences) can reach these pages. Group lists are private:
they answer 404, exactly as an unknown list does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import load_only

from ..extensions import db
from ..issues.markdown import markdown_to_html
from ..links import external_url
from ..mail import sender_address
from ..models import Issue, MailingList, is_valid_slug
from .dates import czech_date, local_date

if TYPE_CHECKING:  # imported where a feed is built: no other page needs ElementTree
    import xml.etree.ElementTree as ET

bp = Blueprint("archive", __name__, url_prefix="/archive")

# Sending, paused and sent issues reached (some) readers; a cancelled one is
# left out even if partly sent, since its editor chose to withdraw it.
PUBLISHED_STATUSES = Issue.PUBLISHED
FEED_ENTRIES = 20
CACHE_CONTROL = "public, max-age=300"
# Issue numbers are a 32-bit integer column: a larger number in the URL would
# make PostgreSQL raise instead of finding nothing.
MAX_NUMBER = 2**31 - 1

ATOM = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Characters XML 1.0 forbids; ElementTree would write them and break the feed.
_NOT_XML_CHAR = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class ArchivedIssue:
    """What the pages and the feed say about one published issue."""

    number: int
    subject: str
    preheader: str
    sent_at: datetime  # naive UTC, as stored
    date_text: str  # "10. prosince 2026", in Europe/Prague
    date_iso: str  # "2026-12-10", for <time datetime>


def _public_list(slug: str) -> MailingList:
    """The newsletter named `slug`; 404 for unknown lists and for groups alike."""
    if not is_valid_slug(slug):  # NUL and friends never reach the database
        abort(404)
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    if mailing_list is None or mailing_list.kind != "newsletter":
        abort(404)
    return mailing_list


def _is_published(mailing_list: MailingList) -> tuple[ColumnElement[bool], ...]:
    """The conditions that make an issue of `mailing_list` public."""
    return (
        Issue.list_id == mailing_list.id,
        Issue.status.in_(PUBLISHED_STATUSES),
        Issue.number.is_not(None),
    )


def _published(mailing_list: MailingList) -> Select:
    """Published issues of a list, newest first."""
    return select(Issue).where(*_is_published(mailing_list)).order_by(Issue.number.desc())


def _archived(issue: Issue) -> ArchivedIssue:
    # started_at is set with the number; created_at only guards odd old rows.
    sent_at = issue.started_at or issue.created_at
    if issue.number is None:  # `_published` selects numbered issues only
        raise ValueError(f"issue {issue.id} has no number: it was never published")
    day = local_date(sent_at, current_app.config["TIMEZONE"])
    return ArchivedIssue(
        number=issue.number,
        subject=issue.subject,
        preheader=issue.preheader or "",
        sent_at=sent_at,
        date_text=czech_date(day),
        date_iso=day.isoformat(),
    )


def _cacheable(response: Response) -> Response:
    """Public, briefly cached, and answered with 304 when the reader already has it."""
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.add_etag()
    response.make_conditional(request)  # in place: it returns the same response
    return response


@bp.get("/<slug>")
def list_issues(slug: str) -> ResponseReturnValue:
    """The newsletter's archive: every published issue, newest first."""
    mailing_list = _public_list(slug)
    # The list page needs no bodies: do not load a hundred issues' Markdown.
    query = _published(mailing_list).options(
        load_only(Issue.number, Issue.subject, Issue.preheader, Issue.started_at, Issue.created_at)
    )
    issues = [_archived(issue) for issue in db.session.scalars(query)]
    page = render_template("archive/list.html", mailing_list=mailing_list, issues=issues)
    return _cacheable(current_app.make_response(page))


@bp.get("/<slug>/<int:number>")
def show_issue(slug: str, number: int) -> ResponseReturnValue:
    """One published issue: its subject, date and body, with links to its neighbours."""
    mailing_list = _public_list(slug)
    if number > MAX_NUMBER:
        abort(404)
    issue = db.session.scalar(_published(mailing_list).where(Issue.number == number))
    if issue is None:
        abort(404)
    # Numbers have gaps (a cancelled issue keeps its number): ask for the nearest.
    published = _is_published(mailing_list)
    previous_number = db.session.scalar(
        select(func.max(Issue.number)).where(*published, Issue.number < number)
    )
    next_number = db.session.scalar(
        select(func.min(Issue.number)).where(*published, Issue.number > number)
    )
    page = render_template(
        "archive/issue.html",
        mailing_list=mailing_list,
        issue=_archived(issue),
        body_html=Markup(markdown_to_html(issue.body)),
        previous_number=previous_number,
        next_number=next_number,
    )
    response = current_app.make_response(page)
    # Issues show the pictures their mail showed, which live on other sites;
    # everything else stays as strict as on the other pages (service/http_guards.py).
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data: https:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return _cacheable(response)


@bp.get("/<slug>/feed.xml")
def feed(slug: str) -> ResponseReturnValue:
    """The latest published issues as an Atom 1.0 feed, every link on BASE_URL."""
    mailing_list = _public_list(slug)
    issues = list(db.session.scalars(_published(mailing_list).limit(FEED_ENTRIES)))
    body = atom_feed(mailing_list, issues)
    response = current_app.response_class(body, content_type="application/atom+xml; charset=utf-8")
    return _cacheable(response)


def atom_feed(mailing_list: MailingList, issues: list[Issue]) -> bytes:
    """The Atom document (RFC 4287); ElementTree does the escaping."""
    import xml.etree.ElementTree as ET  # here: only the feed needs it (a worker never does)

    feed_url = external_url("archive.feed", slug=mailing_list.slug)
    archive_url = external_url("archive.list_issues", slug=mailing_list.slug)
    entries = [_archived(issue) for issue in issues]

    # Plain tag names under a literal xmlns: ElementTree's default_namespace
    # option refuses the unqualified attributes (rel, href) Atom uses.
    root = ET.Element("feed", {"xmlns": ATOM, XML_LANG: mailing_list.language})
    _text(root, "id", feed_url)
    _text(root, "title", mailing_list.name)
    if mailing_list.description:
        _text(root, "subtitle", mailing_list.description)
    ET.SubElement(root, "link", rel="self", type="application/atom+xml", href=feed_url)
    ET.SubElement(root, "link", rel="alternate", type="text/html", href=archive_url)
    # A feed without entries still needs a date: when the list was created.
    newest = max((entry.sent_at for entry in entries), default=mailing_list.created_at)
    _text(root, "updated", _rfc3339(newest))
    author = ET.SubElement(root, "author")
    _text(author, "name", sender_address()[0] or str(current_app.jinja_env.globals["site_name"]))

    for issue, entry in zip(issues, entries, strict=True):
        url = external_url("archive.show_issue", slug=mailing_list.slug, number=entry.number)
        element = ET.SubElement(root, "entry")
        _text(element, "id", url)
        _text(element, "title", entry.subject)
        ET.SubElement(element, "link", rel="alternate", type="text/html", href=url)
        # The content is fixed when sending starts, so it was last updated then.
        _text(element, "published", _rfc3339(entry.sent_at))
        _text(element, "updated", _rfc3339(entry.sent_at))
        if entry.preheader:
            _text(element, "summary", entry.preheader)
        _text(element, "content", markdown_to_html(issue.body), type="html")

    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _text(parent: ET.Element, name: str, text: str, **attributes: str) -> ET.Element:
    """A child element holding `text`, minus the characters XML cannot carry."""
    import xml.etree.ElementTree as ET  # loaded by atom_feed already

    element = ET.SubElement(parent, name, attributes)
    element.text = _NOT_XML_CHAR.sub("", text)
    return element


def _rfc3339(moment: datetime) -> str:
    """A stored naive-UTC moment as Atom wants it: 2026-12-10T08:00:00Z."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"
