"""Export and erasure are complete: a person with a full history leaves nothing but a hash.

The person here has done everything the service records: signed up to a
newsletter and confirmed, asked to join a working group (coordinators were
told by mail) and been approved, received an issue (delivery rows) and an
editor's test copy of one (a mail row with no subscriber id, addressed as the
editor typed it), had a mail bounce. After erasure, through their own link or by an administrator,
every row of every table is searched for their address, name, organisation,
function, public key and subscriber id: only the keyed-hash suppression may
remain. An import of the address is then refused, and a fresh double opt-in
through the public form works.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from service.addresses import address_hash
from service.clock import utcnow
from service.delivery_cascade import CASCADES
from service.extensions import db
from service.groups import membership
from service.issues import sending
from service.meetings import rules as meetings
from service.meetings.replies import process_reply
from service.meetings.rules import MeetingInput
from service.models import (
    Bounce,
    MailingList,
    OutgoingMail,
    Subscriber,
    Subscription,
    Suppression,
)
from service.subscriptions import transfer
from tests.conftest import csrf_token_of, link_to, log_in, privacy_link, run_jobs
from tests.meetings.test_answers import reply_for, rsvp_link

EMAIL = "Petra.Svobodova@ostrava.example"  # capitals: the key is case-folded
NAME = "Petra Svobodová"
ORGANIZATION = "Charita Ostrava Zábřeh"
FUNCTION = "vedoucí terénního týmu"
COLLEAGUE = "redakce@socialnibydleni.example"


def readable(value) -> str:
    """A cell as searchable text; stored mails are parsed, so encoded bodies are searched too."""
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        message = message_from_bytes(raw, policy=policy.default)
        parts = [raw.decode("utf-8", "replace")]
        parts += [f"{name}: {content}" for name, content in message.items()]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        return "\n".join(parts)
    return str(value)


def everything_mentioning(*needles: str) -> list[str]:
    """Every (table, row) whose text contains one of `needles` (case-insensitive)."""
    db.session.expire_all()
    wanted = [n.casefold() for n in needles]
    found = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()).all():
            text = " | ".join(readable(value) for value in row).casefold()
            if any(needle in text for needle in wanted):
                found.append(f"{table.name}: {text[:300]}")
    db.session.commit()
    return found


def rows_pointing_at(subscriber_id: int) -> list[str]:
    """Rows whose foreign key names the subscriber (ids are reused nowhere, but must be gone),
    and those of `delivery`, which points at subscribers without a foreign key (its rows
    follow a deleted subscriber by trigger, service/delivery_cascade.py)."""
    by_trigger = {("delivery", column) for _, parent, column in CASCADES if parent == "subscriber"}
    found = []
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if (table.name, column.name) in by_trigger or any(
                fk.column.table.name == "subscriber" for fk in column.foreign_keys
            ):
                rows = db.session.execute(table.select().where(column == subscriber_id)).all()
                found += [f"{table.name}.{column.name}" for _ in rows]
    return found


@pytest.fixture
def person(client, app, outbox, accounts) -> dict:
    """Everything the service can record about one person; returns what identifies them."""
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    group.visibility = "public"
    db.session.commit()

    client.post(
        "/subscribe",
        data={"email": EMAIL, "name": NAME, "list": "zpravodaj"},
        headers={"User-Agent": "Mozilla/5.0 (erasure test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    run_jobs(app)
    client.post(link_to(outbox.mails[-1], "/confirm/"))
    client.post(
        "/groups/ostrava-psb/join",
        data={
            "email": EMAIL,
            "name": NAME,
            "organization": ORGANIZATION,
            "institution": "nno",
            "function": FUNCTION,
        },
    )
    run_jobs(app)
    client.post(link_to(outbox.mails[-1], "/groups/join/"))  # coordinators are told
    run_jobs(app)
    notices = [m for m in outbox.mails if m.rcpt_tos == [accounts.coordinator.email]]
    assert notices, "the coordinator was told about the request"

    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key=EMAIL.casefold()))
    request = db.session.scalar(
        select(Subscription).filter_by(subscriber_id=subscriber.id, list_id=group.id)
    )
    membership.approve(group, request, accounts.coordinator)
    db.session.commit()
    answer_a_meeting(client, app, outbox, group)

    fields, errors = sending.validate_fields("Zpravodaj 2/2027", "Dobrý den,\n\nnovinky.\n", "")
    assert not errors
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    issue = sending.create_issue(zpravodaj, fields, None)
    db.session.commit()
    sending.send_now(issue)
    db.session.commit()
    # The editor sends a test copy to the person and to a colleague, typing
    # the person's address in other capitals: rows tied to no subscriber.
    addresses, problem = sending.parse_test_addresses(f"{EMAIL.lower()}, {COLLEAGUE}")
    assert problem is None
    sending.send_test(issue, addresses)
    db.session.commit()
    run_jobs(app)
    db.session.add(
        Bounce(
            subscriber_id=subscriber.id,
            kind="soft",
            status="4.2.2",
            diagnostic=f"452 4.2.2 <{EMAIL}>: mailbox full",
            fingerprint="f" * 64,
        )
    )
    db.session.commit()

    # The history is really there before erasure (the search finds it).
    found = everything_mentioning(EMAIL, NAME, ORGANIZATION)
    for table in ("subscriber", "subscription", "bounce", "outgoing_mail", "meeting_response"):
        assert any(line.startswith(table + ":") for line in found), table
    test_copies = db.session.scalars(
        select(OutgoingMail.recipient).filter_by(kind="issue_test", subscriber_id=None)
    ).all()
    assert sorted(test_copies) == sorted([EMAIL.lower(), COLLEAGUE])
    pointing = {ref.split(".")[0] for ref in rows_pointing_at(subscriber.id)}
    assert pointing >= {
        "consent_event",
        "delivery",
        "bounce",
        "outgoing_mail",
        "subscription",
        "meeting_response",
    }
    return {
        "id": subscriber.id,
        "public_key": subscriber.public_key,
        "preferences": link_to(outbox.mails[-1], "/preferences/"),
    }


def answer_a_meeting(client, app, outbox, group: MailingList) -> None:
    """The person is invited to a meeting, answers with a note naming their organisation,
    and their calendar proposes another time (a notice to the coordinators names them)."""
    fields, errors = sending.validate_fields("Pozvánka: setkání PSB", "Dobrý den,\n\nzveme vás.\n")
    assert not errors
    invitation = sending.create_issue(group, fields, None)
    start = utcnow().replace(microsecond=0) + timedelta(days=20)
    meetings.attach_meeting(
        invitation, MeetingInput(start, start + timedelta(hours=2), "Magistrát")
    )
    db.session.commit()
    sending.send_now(invitation)
    db.session.commit()
    run_jobs(app)
    [mail] = [m for m in outbox.mails if m.rcpt_tos[0].casefold() == EMAIL.casefold()][-1:]
    saved = client.post(
        rsvp_link(mail, "Přijdu").split("?")[0],
        data={"odpoved": "prijdu", "poznamka": f"Přijdu za {ORGANIZATION}."},
    )
    assert saved.status_code == 200
    _, counter = reply_for(mail, "TENTATIVE", method="COUNTER")
    assert process_reply(counter).status == "counter"
    run_jobs(app)


def assert_nothing_left(person: dict) -> None:
    left = everything_mentioning(EMAIL, NAME, ORGANIZATION, FUNCTION, person["public_key"])
    assert left == []
    assert rows_pointing_at(person["id"]) == []
    suppressions = db.session.scalars(select(Suppression)).all()
    assert [(s.address_hash, s.reason) for s in suppressions] == [
        (address_hash(EMAIL.casefold()), "erased")
    ]


def assert_only_a_fresh_double_opt_in_brings_them_back(client, app, outbox) -> None:
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    report = transfer.import_subscribers(
        io.StringIO(f"email,name\n{EMAIL},{NAME}\n"), zpravodaj, "starý seznam 2025"
    )
    assert report.imported == 0
    assert report.problems == [(2, "adresa byla vymazána nebo je nedoručitelná; neimportováno")]
    assert db.session.scalar(select(Subscriber.id)) is None

    outbox.catcher.clear()
    assert client.post("/subscribe", json={"email": EMAIL}).status_code == 202
    run_jobs(app)
    assert len(outbox.mails) == 1
    assert db.session.scalar(select(Suppression.id)) is not None  # until they confirm
    client.post(link_to(outbox.mails[0], "/confirm/"))
    db.session.expire_all()
    assert db.session.scalar(select(Subscription.status)) == "confirmed"
    assert db.session.scalar(select(Suppression.id)) is None


def test_own_export_holds_the_whole_history(client, app, outbox, person):
    response = client.post(privacy_link(client, app, outbox, person["preferences"]) + "/export")
    assert response.status_code == 200
    data = response.get_json()
    assert data["email"] == EMAIL
    assert {s["list"] for s in data["subscriptions"]} == {"zpravodaj", "ostrava-psb"}
    group = next(s for s in data["subscriptions"] if s["list"] == "ostrava-psb")
    assert (group["organization"], group["function"]) == (ORGANIZATION, FUNCTION)
    assert data["deliveries"] and data["mails"]
    by_action = {e["action"]: e for e in data["consent_events"]}
    signup, join = by_action["signup"], by_action["join_request"]
    assert signup["consent_text"]["kind"] == "consent"
    assert join["consent_text"]["kind"] == "group_consent"
    assert "organizaci, typ instituce a funkci" in join["consent_text"]["text"]
    for event in (signup, join):
        privacy = event["privacy_text"]
        assert privacy["kind"] == "privacy"
        assert privacy["version"] == 1
        assert re.fullmatch(r"[0-9a-f]{64}", privacy["sha256"])
        assert "Zásady zpracování osobních údajů" in privacy["text"]
    assert by_action["confirm"]["privacy_text"] is None  # a click on a link, not a form
    [answer] = data["meeting_answers"]
    assert (answer["list"], answer["answer"], answer["channel"]) == (
        "ostrava-psb",
        "ACCEPTED",
        "web",
    )
    assert answer["note"] == f"Přijdu za {ORGANIZATION}." and answer["attended"] is None
    assert answer["date"] is None  # the meeting, not one date of a series
    assert answer["meeting"] == "Setkání PSB" and answer["answered_at"].endswith("Z")


def test_self_service_erasure_leaves_only_the_keyed_hash(client, app, outbox, person):
    path = privacy_link(client, app, outbox, person["preferences"]) + "/erase"
    assert client.get(path).status_code == 200
    assert db.session.get(Subscriber, person["id"]) is not None  # GET changes nothing
    assert client.post(path).status_code == 200
    assert_nothing_left(person)
    assert_only_a_fresh_double_opt_in_brings_them_back(client, app, outbox)


def test_erasure_keeps_the_test_copy_sent_to_a_colleague(client, app, outbox, person):
    path = privacy_link(client, app, outbox, person["preferences"]) + "/erase"
    assert client.post(path).status_code == 200
    db.session.expire_all()
    left = db.session.scalars(select(OutgoingMail.recipient).filter_by(kind="issue_test")).all()
    assert left == [COLLEAGUE]


def test_admin_erasure_leaves_only_the_keyed_hash(client, app, outbox, accounts, person):
    log_in(client, accounts.admin.email)
    export = client.get(f"/admin/subscribers/{person['id']}/export.json")
    assert export.get_json()["email"] == EMAIL
    path = f"/admin/subscribers/{person['id']}/erase"
    response = client.post(path, data={"csrf_token": csrf_token_of(client, path)})
    assert response.status_code == 302
    assert_nothing_left(person)
    assert_only_a_fresh_double_opt_in_brings_them_back(client, app, outbox)


def test_erased_link_is_gone_and_outgoing_mail_of_others_stays(client, app, outbox, person):
    """Erasure takes the person's own rows, not what was sent to others about other things."""
    others = db.session.scalars(
        select(OutgoingMail.id).where(OutgoingMail.subscriber_id.is_(None))
    ).all()
    client.post(privacy_link(client, app, outbox, person["preferences"]) + "/erase")
    assert client.get(person["preferences"]).status_code == 404
    db.session.expire_all()
    remaining = set(db.session.scalars(select(OutgoingMail.id)))
    # Only mails that named the person (the coordinators' notice) went with them.
    assert remaining <= set(others)


@pytest.mark.parametrize(
    "rotate",
    ["secret key into the fallbacks", "suppression key set later"],
)
def test_erased_address_stays_unimportable_after_the_key_changes(
    client, app, outbox, person, rotate
):
    """The suppression hash is keyed; changing the key must not forget who was erased."""
    client.post(privacy_link(client, app, outbox, person["preferences"]) + "/erase")
    if rotate == "secret key into the fallbacks":
        app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
        app.config["SECRET_KEY"] = "a-new-secret-key-after-rotation"
    else:
        app.config["SUPPRESSION_KEY"] = "a-suppression-key-set-later"
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    report = transfer.import_subscribers(
        io.StringIO(f"email,name\n{EMAIL},{NAME}\n"), zpravodaj, "starý seznam 2025"
    )
    assert report.imported == 0
    assert report.problems == [(2, "adresa byla vymazána nebo je nedoručitelná; neimportováno")]
