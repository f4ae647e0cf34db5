"""An issue as mail: rendered once per issue, personalised cheaply per recipient.

Building an `email` message per recipient costs milliseconds; the delivery
engine must keep up with raw smtplib. So the issue is rendered once (Markdown
to sanitised HTML and text, inside the mail template) with placeholders for
the personal links, then turned into a `MessageSkeleton`: the MIME bytes with
everything that is the same for every recipient already encoded. Per
recipient only the To, Date, Message-ID and List-Unsubscribe headers, the
few body lines holding a personal link and, in a meeting invitation, the
calendar's ORGANIZER and ATTENDEE lines (meetings/calendar.py) are encoded
and joined in.

Quoted-printable is line-local (soft breaks never cross a hard line break),
so encoding the static lines once and the personal lines per recipient gives
exactly the bytes the `email` package would produce for the whole body.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import quoprimime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime

from flask import render_template
from flask_babel import gettext as _
from markupsafe import Markup

from .. import tokens
from ..czech import group_in_sentence
from ..deliverability.dkim import PersonalCopy, SharedBody
from ..i18n import in_language
from ..links import external_url
from ..mail import MAIL_POLICY, format_recipient, sender_address, sender_domain
from ..meetings.calendar import (
    ATTENDEE_SLOT,
    InvitationLines,
    calendar_for,
    documents,
    with_attendee_slots,
)
from ..meetings.calendar import mail_context as meeting_context
from ..meetings.rsvp import RsvpTokens
from ..models import Issue, MailingList
from .markdown import inline_css, markdown_to_html, markdown_to_text

UNSUBSCRIBE_PLACEHOLDER = "@@ZPRAVODAJ-UNSUBSCRIBE-URL@@"
PREFERENCES_PLACEHOLDER = "@@ZPRAVODAJ-PREFERENCES-URL@@"
MEMBER_PAGE_PLACEHOLDER = "@@ZPRAVODAJ-MEMBER-PAGE-URL@@"
# A meeting invitation's "Přijdu / Možná / Nepřijdu" page, signed per member and meeting.
RSVP_PLACEHOLDER = "@@ZPRAVODAJ-RSVP-URL@@"
PLACEHOLDERS = (
    UNSUBSCRIBE_PLACEHOLDER,
    PREFERENCES_PLACEHOLDER,
    MEMBER_PAGE_PLACEHOLDER,
    RSVP_PLACEHOLDER,
    ATTENDEE_SLOT,
)
_TEXT_MARK = "ZPRAVODAJTEXTPARTMARK"
_HTML_MARK = "ZPRAVODAJHTMLPARTMARK"
_CALENDAR_MARK = "ZPRAVODAJCALENDARPARTMARK"
# A token that names no subscriber: the personal links of previews and test sends.
SAMPLE_TOKEN = "ukazka"


@dataclass(frozen=True)
class RenderedIssue:
    """The issue's mail content, with placeholders where personal links go."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class MailFile:
    """A file every copy carries: an attachment or the meeting's calendar."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Recipient:
    """Who one personalised copy goes to. `public_key` None: a preview or test."""

    address: str
    name: str = ""
    public_key: str | None = None

    @property
    def smtputf8(self) -> bool:
        return not self.address.isascii()


def list_id(mailing_list: MailingList) -> str:
    """RFC 2919 List-Id: `Name <slug.domain>`; the name only when it is plain ASCII."""
    ident = f"<{mailing_list.slug}.{sender_domain()}>"
    name = mailing_list.name
    if name.isascii() and all(c.isalnum() or c in " -_.," for c in name):
        return f'"{name}" {ident}'
    return ident


def reason_text(mailing_list: MailingList) -> str:
    """Why the reader gets this mail (shown in every mail's footer), in the current language."""
    if mailing_list.kind == "group":
        group = group_in_sentence(mailing_list.name)
        return _("Tento e-mail dostáváte jako člen %(group)s.", group=group)
    return _(
        "Tento e-mail dostáváte, protože jste se přihlásili k odběru „%(name)s“ a odběr potvrdili.",
        name=mailing_list.name,
    )


def archive_links(issue: Issue) -> tuple[str | None, str | None]:
    """(the list's archive, this issue in it); group lists have no public archive."""
    mailing_list = issue.mailing_list
    if mailing_list.kind != "newsletter":
        return None, None
    archive_url = external_url("archive.list_issues", slug=mailing_list.slug)
    web_url = (
        external_url("archive.show_issue", slug=mailing_list.slug, number=issue.number)
        if issue.number is not None
        else None
    )
    return archive_url, web_url


def render_issue(issue: Issue) -> RenderedIssue:
    """The issue's HTML and text parts, with placeholders for the personal links.

    Rendered once for every reader, so its fixed parts (footer, meeting box) are in
    the list's language, the language the issue itself is written in.
    """
    with in_language(issue.mailing_list.language):
        return _render_issue(issue)


def _render_issue(issue: Issue) -> RenderedIssue:
    mailing_list = issue.mailing_list
    archive_url, web_url = archive_links(issue)
    context = {
        "subject": issue.subject,
        "preheader": issue.preheader or "",
        "body_html": Markup(markdown_to_html(issue.body)),
        "body_text": markdown_to_text(issue.body),
        "list_name": mailing_list.name,
        "sender_name": sender_address()[0] or _("Sociální bydlení v ČR"),
        "reason": reason_text(mailing_list),
        "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
        "preferences_url": PREFERENCES_PLACEHOLDER,
        # A working group's members' page (announcements, next meeting), signed per member.
        "member_page_url": MEMBER_PAGE_PLACEHOLDER if mailing_list.kind == "group" else None,
        "archive_url": archive_url,
        "web_url": web_url,
        "mailing_list": mailing_list,
        "issue": issue,
        "meeting": meeting_context(issue),
        "rsvp_url": RSVP_PLACEHOLDER,
    }
    html = inline_css(render_template("email/issue.html", **context))
    text = render_template("email/issue.txt", **context)
    return RenderedIssue(subject=issue.subject, html=html, text=text)


def _qp(line: str) -> bytes:
    """Quoted-printable of one line, as the `email` package encodes a UTF-8 body."""
    encoded = quoprimime.body_encode(line.encode("utf-8").decode("latin-1"), 76, "\r\n")
    return encoded.encode("ascii")


# Quoted-printable per character, as `quoprimime.body_encode` maps a body (CR and LF kept).
_QP_CHARS = [f"={c:02X}" if quoprimime.body_check(c) else chr(c) for c in range(256)]
_QP_CHARS[ord("\r")], _QP_CHARS[ord("\n")] = "\r", "\n"
_PLACEHOLDER_PATTERN = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")


def _qp_chars(text: str) -> str:
    if text.isascii() and text.isprintable():  # a link: only "=" needs escaping
        return text.replace("=", "=3D")
    return text.encode("utf-8").decode("latin-1").translate(_QP_CHARS)


def _qp_wrap(encoded: str, maxlinelen: int = 76, eol: str = "\r\n") -> str:
    """The soft line breaks `quoprimime.body_encode` adds to a body it has mapped; the
    same steps, so the bytes are the same."""
    pieces: list[str] = []
    append = pieces.append
    soft_break = "=" + eol
    for line in encoded.splitlines():
        start, laststart = 0, len(line) - 1 - maxlinelen
        while start <= laststart:
            stop = start + maxlinelen - 1
            if line[stop - 2] == "=":  # never break inside an =XX escape
                append(line[start : stop - 1])
                start = stop - 2
            elif line[stop - 1] == "=":
                append(line[start:stop])
                start = stop - 1
            else:
                append(line[start:stop] + "=")
                start = stop
        if line and line[-1] in " \t":
            room = start - laststart
            if room >= 3:
                tail = f"={ord(line[-1]):02X}"
            elif room == 2:
                tail = line[-1] + soft_break
            else:
                tail = soft_break + f"={ord(line[-1]):02X}"
            append(line[start:-1] + tail)
        else:
            append(line[start:])
    if encoded and encoded[-1] in "\r\n":
        append("")
    return eol.join(pieces)


class PersonalLine:
    """A body line holding placeholders, its static text mapped to quoted-printable once.

    Per recipient only the personal values are mapped and the soft line breaks
    placed; mapping a whole long line (an inlined-CSS link) per copy cost more
    than the rest of the copy. `encode` gives exactly `_qp` of the filled line.
    """

    def __init__(self, line: str) -> None:
        self.template = line
        self.segments: list[tuple[bool, str]] = [
            (True, piece) if piece in PLACEHOLDERS else (False, _qp_chars(piece))
            for piece in _PLACEHOLDER_PATTERN.split(line)
            if piece
        ]

    def encode(self, values: dict[str, str]) -> bytes:
        """The filled line; `values` maps each placeholder to its text (see `mapped`)."""
        return self.encode_mapped(mapped(values))

    def encode_mapped(self, mapped_values: dict[str, str]) -> bytes:
        """The filled line from values already mapped to quoted-printable characters."""
        encoded = "".join(
            mapped_values.get(piece, piece) if personal else piece
            for personal, piece in self.segments
        )
        return _qp_wrap(encoded).encode("ascii")


def mapped(values: dict[str, str]) -> dict[str, str]:
    """Placeholder values mapped to quoted-printable characters, once per copy."""
    return {placeholder: _qp_chars(value) for placeholder, value in values.items()}


def _split_lines(body: str) -> list[bytes | PersonalLine]:
    """Static lines encoded now and merged; lines with a placeholder kept as templates."""
    parts: list[bytes | PersonalLine] = []
    static: list[bytes] = []
    lines = body.replace("\r\n", "\n").rstrip("\n").split("\n")
    for index, line in enumerate(lines):
        ending = b"\r\n" if index < len(lines) - 1 else b""
        if any(placeholder in line for placeholder in PLACEHOLDERS):
            if static:
                parts.append(b"".join(static))
                static = []
            parts.append(PersonalLine(line))
            if ending:
                static.append(ending)
        else:
            static.append(_qp(line) + ending)
    if static:
        parts.append(b"".join(static))
    return parts


def _attach(msg: EmailMessage, files: tuple[MailFile, ...]) -> None:
    """The documents every copy carries: the mail becomes multipart/mixed around them."""
    if files:
        msg.make_mixed()
        for file in files:
            maintype, _, subtype = file.content_type.partition("/")
            msg.add_attachment(
                file.data, maintype=maintype, subtype=subtype, filename=file.filename
            )


class MessageSkeleton:
    """One issue's message with the per-recipient parts left open (see module docstring)."""

    def __init__(
        self,
        rendered: RenderedIssue,
        *,
        mailing_list: MailingList,
        issue_id: int | None,
        subject_prefix: str = "",
        calendar: tuple[str, bytes] | None = None,
        invitation: InvitationLines | None = None,
        meeting_id: int | None = None,
        meeting_occurrence: datetime | None = None,
        files: tuple[MailFile, ...] = (),
        has_meeting: bool = False,
    ) -> None:
        self.issue_id = issue_id
        self.list_slug = mailing_list.slug
        self.domain = sender_domain()
        msg = EmailMessage(policy=MAIL_POLICY)
        from_name, from_address = sender_address()
        msg["From"] = HeaderAddress(display_name=from_name, addr_spec=from_address)
        msg["Subject"] = subject_prefix + rendered.subject
        msg["List-Id"] = list_id(mailing_list)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(_TEXT_MARK + "\n", subtype="plain", cte="quoted-printable")
        msg.add_alternative(_HTML_MARK + "\n", subtype="html", cte="quoted-printable")
        # The calendar is quoted-printable like the text, so that only its
        # personal lines (ORGANIZER, ATTENDEE) are encoded per recipient; the
        # attachments are the same for everyone: encoded here once (base64).
        if calendar is not None:
            msg.add_alternative(
                _CALENDAR_MARK + "\n",
                subtype="calendar",
                cte="quoted-printable",
                params={"method": calendar[0]},
            )
        _attach(msg, files)
        raw = msg.as_bytes(policy=MAIL_POLICY)
        # The static headers go last, after the personal ones.
        self._head, body = raw.split(b"\r\n\r\n", 1)
        before_text, rest = body.split(_TEXT_MARK.encode(), 1)
        between, after_html = rest.split(_HTML_MARK.encode(), 1)
        calendar_parts: list[bytes | PersonalLine] = []
        if calendar is not None:
            after_html, after_calendar = after_html.split(_CALENDAR_MARK.encode(), 1)
            calendar_parts = [*_split_lines(with_attendee_slots(calendar[1])), after_calendar]
        self._body, self._shared_body = _body_parts(
            b"\r\n\r\n" + before_text,
            *_split_lines(rendered.text),
            between,
            *_split_lines(rendered.html),
            after_html,
            *calendar_parts,
        )
        # An issue about one date of a series (meeting_occurrence) answers for that date.
        self._invitation, self._meeting_id = invitation, meeting_id
        # A preview's meeting has no id yet (never saved): its answer links are samples.
        self._has_meeting = has_meeting or meeting_id is not None
        self._meeting_occurrence = meeting_occurrence
        self._prepare_links()

    def _prepare_links(self) -> None:
        """Each personal link's URL around its token, and the signers: once per issue."""
        self._unsubscribe_prefix, _, self._unsubscribe_suffix = external_url(
            "subscriptions.unsubscribe", token=SAMPLE_TOKEN
        ).rpartition(SAMPLE_TOKEN)
        self._preferences_prefix, _, self._preferences_suffix = external_url(
            "subscriptions.preferences", token=SAMPLE_TOKEN
        ).rpartition(SAMPLE_TOKEN)
        self._member_page_prefix, _, self._member_page_suffix = external_url(
            "groups.member_page", slug=self.list_slug, token=SAMPLE_TOKEN
        ).rpartition(SAMPLE_TOKEN)
        self._rsvp_prefix, _, self._rsvp_suffix = external_url(
            "rsvp.answer", token=SAMPLE_TOKEN
        ).rpartition(SAMPLE_TOKEN)
        # Built once: an itsdangerous serializer derives its keys when created.
        self._unsubscribe_tokens = tokens.serializer("unsubscribe")
        self._preferences_tokens = tokens.serializer("preferences")
        self._rsvp_tokens = RsvpTokens()

    def personal_links(self, recipient: Recipient) -> tuple[str, str, str]:
        """(unsubscribe URL, preferences URL, members' page URL) for `recipient`."""
        if recipient.public_key is None:
            unsubscribe, preferences = SAMPLE_TOKEN, SAMPLE_TOKEN
        else:
            unsubscribe = self._unsubscribe_tokens.dumps(
                {"s": recipient.public_key, "l": self.list_slug}
            )
            preferences = self._preferences_tokens.dumps({"s": recipient.public_key})
        return (
            self._unsubscribe_prefix + unsubscribe + self._unsubscribe_suffix,
            self._preferences_prefix + preferences + self._preferences_suffix,
            # The members' page is signed with the preferences token (same person, same key).
            self._member_page_prefix + preferences + self._member_page_suffix,
        )

    def new_message_id(self, delivery_id: int | None = None) -> str:
        local = f"{self.issue_id or 0}.{delivery_id or 0}.{secrets.token_hex(6)}"
        return f"<{local}@{self.domain}>"

    def personalise(self, recipient: Recipient, message_id: str) -> PersonalCopy:
        """The complete message for one recipient, CRLF line endings, ready for SMTP."""
        unsubscribe_url, preferences_url, member_page_url = self.personal_links(recipient)
        to = format_recipient(_one_line(recipient.name), recipient.address, recipient.smtputf8)
        date = format_datetime(datetime.now(UTC))
        personal_head = (
            f"To: {to}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n"
            f"List-Unsubscribe: <{unsubscribe_url}>\r\n"
        ).encode("utf-8" if recipient.smtputf8 else "ascii")
        values = {
            UNSUBSCRIBE_PLACEHOLDER: unsubscribe_url,
            PREFERENCES_PLACEHOLDER: preferences_url,
            MEMBER_PAGE_PLACEHOLDER: member_page_url,
        }
        if self._has_meeting:
            values[RSVP_PLACEHOLDER] = self.rsvp_url(recipient)
        if self._invitation is not None:
            values[ATTENDEE_SLOT] = self._invitation(
                _one_line(recipient.name), recipient.address, recipient.public_key
            )
        values = mapped(values)  # each link is in several lines: mapped once
        chunks = [personal_head, self._head]
        pieces = []
        for part in self._body:
            if isinstance(part, bytes):
                chunks.append(part)
            else:
                pieces.append(part.encode_mapped(values))
                chunks.append(pieces[-1])
        # Which parts of the body are whose: the DKIM signer hashes the shared ones once.
        return PersonalCopy.of(b"".join(chunks), self._shared_body, pieces)

    def rsvp_url(self, recipient: Recipient) -> str:
        """The member's "Přijdu / Možná / Nepřijdu" page of the issue's meeting."""
        token = (
            SAMPLE_TOKEN
            if recipient.public_key is None or self._meeting_id is None
            else self._rsvp_tokens.dump(
                recipient.public_key, self._meeting_id, self._meeting_occurrence
            )
        )
        return self._rsvp_prefix + token + self._rsvp_suffix


def _body_parts(*parts: bytes | PersonalLine) -> tuple[list[bytes | PersonalLine], SharedBody]:
    """The body (from the header's blank line on) with neighbouring static parts joined,
    and its static parts as the `SharedBody` of every copy (an empty part wherever two
    personal lines meet; without the header's blank line, which is not the body's)."""
    body: list[bytes | PersonalLine] = []
    shared = [b""]
    for part in parts:
        if isinstance(part, bytes):
            if body and isinstance(body[-1], bytes):
                body[-1] += part
            else:
                body.append(part)
            shared[-1] += part
        else:
            body.append(part)
            shared.append(b"")
    if not shared[0].startswith(b"\r\n\r\n"):
        raise ValueError("the skeleton's body must start with the header's blank line")
    return body, SharedBody([shared[0][4:], *shared[1:]])


def _one_line(text: str) -> str:
    """No CR or LF can reach a header from a stored name."""
    return " ".join(text.split())


def skeleton_for(issue: Issue, subject_prefix: str = "") -> MessageSkeleton:
    """The skeleton of an issue being sent (its stored rendering) or of a draft (fresh)."""
    if issue.rendered_html is not None and issue.rendered_text is not None:
        rendered = RenderedIssue(issue.subject, issue.rendered_html, issue.rendered_text)
    else:
        rendered = render_issue(issue)
    calendar = calendar_for(issue)
    return MessageSkeleton(
        rendered,
        mailing_list=issue.mailing_list,
        issue_id=issue.id,
        subject_prefix=subject_prefix,
        calendar=calendar,
        invitation=(
            InvitationLines(issue.meeting)
            if calendar is not None and issue.meeting is not None
            else None
        ),
        meeting_id=issue.meeting_id,
        meeting_occurrence=issue.meeting_occurrence,
        files=tuple(MailFile(a.filename, a.content_type, a.data) for a in documents(issue)),
        has_meeting=issue.meeting is not None,
    )
