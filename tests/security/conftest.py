"""A small but complete world for walking every route: lists, people, issues, a meeting.

`world` makes one of everything a route can name (a subscriber with each kind
of signed link, a group with a member, an invitee and a join request, a sent
issue in the archive, a draft with an attachment, a meeting), and
`url_for_rule` fills a rule's arguments from it, so a route added later is
walked without anyone listing it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from service import tokens
from service.clock import utcnow
from service.extensions import db
from service.groups.emails import invitation_token
from service.groups.joining import join_token
from service.meetings.rsvp import rsvp_token
from service.models import (
    Attachment,
    ImportProblem,
    Issue,
    MailingList,
    Meeting,
    Subscriber,
    SubscriberImport,
    Subscription,
)

GROUP = "ostrava-psb"


@dataclass
class World:
    reader: Subscriber  # confirmed on zpravodaj, pending on novinky
    member: Subscriber  # confirmed member of the group
    invitee: Subscriber  # invited to the group
    joiner: Subscriber  # asked to join the group
    member_subscription_id: int
    sent_issue: Issue  # number 1 of zpravodaj, in the archive
    draft: Issue  # draft of zpravodaj with an attachment
    invitation: Issue  # sent group announcement about the meeting
    meeting: Meeting
    attachment: Attachment
    document: Attachment  # of the sent group announcement: on the members' page
    subscriber_import: SubscriberImport  # an admin CSV upload, finished, with a skipped line

    def token_for(self, endpoint: str) -> str:
        """A valid signed token for a route taking one."""
        if endpoint.startswith("subscriptions.confirm"):
            return tokens.confirm_token(self.reader, ["novinky"])
        if endpoint.startswith("subscriptions.unsubscribe"):
            return tokens.unsubscribe_token(self.reader, "zpravodaj")
        if endpoint.startswith(
            ("subscriptions.preferences_export", "subscriptions.preferences_erase")
        ):
            return tokens.privacy_token(self.reader)
        if endpoint.startswith("subscriptions.preferences"):
            return tokens.preferences_token(self.reader)
        if endpoint.startswith("groups.invitation"):
            return invitation_token(self.invitee, self.group)
        if endpoint.startswith("groups.confirm_join"):
            return join_token(self.joiner, self.group)
        if endpoint in ("groups.member_page", "groups.document"):
            return tokens.preferences_token(self.member)
        if endpoint == "groups.calendar_feed":
            return tokens.dump("calendar", {"s": self.member.public_key, "l": GROUP})
        if endpoint.startswith("rsvp."):
            return rsvp_token(self.member.public_key, self.meeting.id)
        raise AssertionError(f"no token known for {endpoint}: teach tests/security/conftest.py")

    @property
    def group(self) -> MailingList:
        return db.session.scalar(select(MailingList).filter_by(slug=GROUP))

    def values_for(self, endpoint: str, arguments: set[str]) -> dict:
        """Realistic values for a rule's arguments."""
        values: dict = {}
        for name in arguments:
            if name == "token":
                values[name] = self.token_for(endpoint)
            elif name == "slug":
                values[name] = "zpravodaj" if endpoint.startswith("archive.") else GROUP
            elif name == "number":
                values[name] = self.sent_issue.number
            elif name == "issue_id":
                values[name] = self.invitation.id if "meeting" in endpoint else self.draft.id
            elif name == "subscriber_id":
                values[name] = self.reader.id
            elif name == "subscription_id":
                values[name] = self.member_subscription_id
            elif name == "meeting_id":
                values[name] = self.meeting.id
            elif name == "attachment_id":
                values[name] = self.attachment.id
            elif name == "document_id":
                values[name] = self.document.id
            elif name == "import_id":
                values[name] = self.subscriber_import.id
            elif name == "user_id":
                values[name] = None  # filled by the caller (needs the accounts)
            elif name in ("text_id", "version"):
                # A stored text (the privacy notice, stored when first shown).
                from service import consent

                text = consent.current_text("privacy")
                values[name] = text.id if name == "text_id" else text.version
            elif name == "uid":
                values[name] = self.meeting.uid
            elif name in ("key", "recurrence_id"):  # a date of a meeting (its start)
                values[name] = int((self.meeting.start - datetime(1970, 1, 1)).total_seconds())
            elif name == "filename":
                values[name] = "zpravodaj.css"
            elif name == "action":
                values[name] = None  # filled by the caller (a POST's verb)
            else:
                raise AssertionError(f"no value for <{name}> of {endpoint}")
        return values


def _person(email: str, name: str, **statuses: str) -> Subscriber:
    subscriber = Subscriber(email=email, email_key=email, ascii_email=email, name=name)
    for slug, status in statuses.items():
        mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug.replace("_", "-")))
        subscriber.subscriptions.append(
            Subscription(
                mailing_list=mailing_list,
                status=status,
                confirmed_at=utcnow() if status == "confirmed" else None,
            )
        )
    db.session.add(subscriber)
    return subscriber


@pytest.fixture
def world(app) -> World:
    group = db.session.scalar(select(MailingList).filter_by(slug=GROUP))
    group.visibility = "public"
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    reader = _person("jana@seznam.cz", "Jana Nováková", zpravodaj="confirmed", novinky="pending")
    member = _person("clen@ostrava.example", "Člen Skupiny", ostrava_psb="confirmed")
    invitee = _person("pozvany@ostrava.example", "Pozvaný", ostrava_psb="pending")
    joiner = _person("zadatel@ostrava.example", "Žadatel", ostrava_psb="requested")
    start = utcnow() + timedelta(days=10)
    meeting = Meeting(
        list_id=group.id,
        uid="setkani-1@socialnibydleni.example",
        start=start,
        end=start + timedelta(hours=2),
        location="Magistrát, zasedací místnost 112",
    )
    sent_issue = Issue(
        list_id=zpravodaj.id,
        number=1,
        subject="Zpravodaj 1/2026",
        body="Text **čísla**.",
        status="sent",
        started_at=datetime(2026, 1, 5, 8),
    )
    draft = Issue(list_id=zpravodaj.id, subject="Koncept", body="Rozepsáno.", status="draft")
    invitation = Issue(
        list_id=group.id,
        number=1,
        subject="Pozvánka na setkání",
        body="Přijďte.",
        status="sent",
        started_at=utcnow(),
        meeting=meeting,
    )
    db.session.add_all([meeting, sent_issue, draft, invitation])
    db.session.flush()
    attachment = Attachment(
        issue_id=draft.id,
        filename="zapis.pdf",
        content_type="application/pdf",
        size=4,
        sha256="0" * 64,
        data=b"%PDF",
    )
    document = Attachment(
        issue_id=invitation.id,
        filename="podklady.pdf",
        content_type="application/pdf",
        size=4,
        sha256="0" * 64,
        data=b"%PDF",
    )
    subscriber_import = SubscriberImport(
        list_id=zpravodaj.id,
        filename="lide.csv",
        consent_source="Mailchimp",
        status="done",
        total_rows=2,
        rows_done=2,
        imported=1,
        skipped=1,
    )
    db.session.add_all([attachment, document, subscriber_import])
    db.session.flush()
    db.session.add(ImportProblem(import_id=subscriber_import.id, line=3, problem="neplatná adresa"))
    db.session.commit()
    member_subscription = next(s for s in member.subscriptions)
    return World(
        reader=reader,
        member=member,
        invitee=invitee,
        joiner=joiner,
        member_subscription_id=member_subscription.id,
        sent_issue=sent_issue,
        draft=draft,
        invitation=invitation,
        meeting=meeting,
        attachment=attachment,
        document=document,
        subscriber_import=subscriber_import,
    )


def get_rules(app, method: str, path_prefix: str = ""):
    """The app's rules answering `method` whose path starts with `path_prefix`."""
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if method in rule.methods and rule.rule.startswith(path_prefix)
        ),
        key=lambda rule: rule.rule,
    )


def is_admin_page(rule) -> bool:
    """Pages behind the admin sign-in (whatever blueprint serves them), not the sign-in."""
    return rule.rule.startswith("/admin/") and rule.endpoint != "admin.login"
