"""Group pages: the public page with its join form, the members' page, Czech meeting times."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from service import tokens
from service.clock import utcnow
from service.extensions import db
from service.groups.dates import format_meeting_time
from service.groups.joining import member_page_url
from service.models import INSTITUTION_TYPES, Issue, MailingList, Meeting, Subscriber, Subscription
from tests.subscriptions.snapshots import database_snapshot


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Winter time: UTC+1.
        (datetime(2026, 12, 10, 8, 30), datetime(2026, 12, 10, 10, 30),
         "čtvrtek 10. prosince 2026 od 9:30 do 11:30"),
        # Summer time: UTC+2.
        (datetime(2026, 6, 2, 12, 0), datetime(2026, 6, 2, 13, 45),
         "úterý 2. června 2026 od 14:00 do 15:45"),
        # Past midnight in Prague: both days, weekdays in the genitive.
        (datetime(2026, 7, 10, 7, 5), datetime(2026, 7, 11, 10, 30),
         "od pátku 10. července 2026 9:05 do soboty 11. července 2026 12:30"),
    ],
)  # fmt: skip
def test_meeting_time_in_czech_and_prague_time(start, end, expected):
    assert format_meeting_time(start, end) == expected


# --- the public page -----------------------------------------------------------------------

GROUP = "ostrava-psb"


@pytest.fixture
def group(app) -> MailingList:
    group = db.session.scalar(select(MailingList).filter_by(slug=GROUP))
    group.municipality = "Ostrava"
    group.theme = "Sociální bydlení a akční plán"
    group.department = "Odbor sociálních věcí a zdravotnictví Magistrátu města Ostravy"
    group.description = "Skupina provádí akční plán sociálního bydlení."
    group.meeting_place = "Magistrát města Ostravy, Prokešovo nám. 8"
    group.meeting_rhythm = "každý druhý čtvrtek v měsíci"
    group.visibility = "public"
    db.session.commit()
    return group


def test_public_group_page_shows_the_group_and_a_join_form(client, group):
    client.get(f"/groups/{GROUP}")  # the first view stores the consent text shown, as /subscribe
    before = database_snapshot()
    response = client.get(f"/groups/{GROUP}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for text in (
        "Pracovní skupina sociálního bydlení",
        "Ostrava",
        "Sociální bydlení a akční plán",
        "Odbor sociálních věcí a zdravotnictví Magistrátu města Ostravy",
        "Skupina provádí akční plán sociálního bydlení.",
        "Prokešovo nám. 8",
        "každý druhý čtvrtek v měsíci",
        "Požádat o členství",
        'name="website"',
    ):
        assert text in page
    assert f'action="/groups/{GROUP}/join"' in page
    for label in INSTITUTION_TYPES.values():
        assert f">{label}</option>" in page
    assert "style=" not in page and "<script" not in page  # CSP: no inline styles or scripts
    assert database_snapshot() == before
    assert GROUP in client.get("/groups/").get_data(as_text=True)


def test_invite_only_groups_and_newsletters_have_no_public_page(client, group):
    assert client.get("/groups/zpravodaj").status_code == 404
    group.visibility = "invite"
    db.session.commit()
    response = client.get(f"/groups/{GROUP}")
    assert response.status_code == 404
    assert "Stránka nebyla nalezena." in response.get_data(as_text=True)
    assert GROUP not in client.get("/groups/").get_data(as_text=True)


@pytest.mark.parametrize(
    "slug", ["%00", "a%00b", "x" * 65, "x" * 5000, "OSTRAVA-PSB", "ostrava psb", "%C5%BE", ".."]
)
def test_hostile_slugs_are_not_found(client, group, slug):
    # A NUL in the path is refused by the input guard before routing matters (400).
    expected = 400 if "%00" in slug else 404
    assert client.get(f"/groups/{slug}").status_code == expected
    assert client.post(f"/groups/{slug}/join", data={"email": "a@b.cz"}).status_code == expected


NUL = "\x00"
HEADER = "a\r\nBcc: x@y.cz"
HUGE = "x" * 100_000
SQL = "'; DROP TABLE subscriber;--"
EMOJI = "🏠" * 300
STORED = None  # the request is taken and the value kept exactly as typed
# What each hostile value in each field of the join form gets: 400 (input_guard refuses
# NUL before any view), 422 with the one Czech message next to the field, or STORED.
HOSTILE_JOIN_INPUT = {
    "email": {
        NUL: 400, HEADER: "Neplatný e-mail.", HUGE: "Neplatný e-mail.",
        SQL: "Neplatný e-mail.", EMOJI: "Neplatný e-mail.",
    },
    "name": {
        NUL: 400, HEADER: "Jméno obsahuje nepovolené znaky.",
        HUGE: "Jméno je příliš dlouhé (nejvýše 200 znaků).", SQL: STORED,
        EMOJI: "Jméno je příliš dlouhé (nejvýše 200 znaků).",
    },
    "organization": {
        NUL: 400, HEADER: "Organizace: text obsahuje nepovolené znaky.",
        HUGE: "Organizace: příliš dlouhý text (nejvýše 200 znaků).", SQL: STORED,
        EMOJI: "Organizace: příliš dlouhý text (nejvýše 200 znaků).",
    },
    "institution": {
        NUL: 400, HEADER: "Neznámý typ instituce.", HUGE: "Neznámý typ instituce.",
        SQL: "Neznámý typ instituce.", EMOJI: "Neznámý typ instituce.",
    },
    "function": {
        NUL: 400, HEADER: "Funkce: text obsahuje nepovolené znaky.",
        HUGE: "Funkce: příliš dlouhý text (nejvýše 200 znaků).", SQL: STORED,
        EMOJI: "Funkce: příliš dlouhý text (nejvýše 200 znaků).",
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "outcome"),
    [
        pytest.param(field, value, outcome, id=f"{field}-{name}")
        for field, outcomes in HOSTILE_JOIN_INPUT.items()
        for name, (value, outcome) in zip(
            ("nul", "header", "huge", "sql", "emoji"), outcomes.items(), strict=True
        )
    ],
)
def test_hostile_join_input_never_breaks(client, group, field, value, outcome):
    from sqlalchemy import func

    from service.models import OutgoingMail

    data = {
        "email": "petra@ostrava.example",
        "organization": "Charita",
        "institution": "nno",
        field: value,
    }
    response = client.post(f"/groups/{GROUP}/join", data=data)
    db.session.expire_all()
    if outcome is STORED:
        assert response.status_code == 202
        [subscriber] = db.session.scalars(select(Subscriber)).all()
        [membership] = subscriber.subscriptions
        stored = {
            "email": subscriber.email,
            "name": subscriber.name,
            "organization": membership.organization,
            "institution": membership.institution,
            "function": membership.function,
        }
        assert stored == {"name": "", "function": "", **data}
        assert (membership.mailing_list.slug, membership.status) == (GROUP, "pending")
        assert db.session.scalar(select(func.count()).select_from(OutgoingMail)) == 1
        return
    if outcome == 400:
        assert response.status_code == 400
    else:
        assert response.status_code == 422
        page = response.get_data(as_text=True)
        assert page.count(outcome) == 1, outcome
    # Refused: nothing stored, nothing mailed.
    for model in (Subscriber, Subscription, OutgoingMail):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0, model


@pytest.mark.parametrize(
    "path",
    [
        "/groups/join/x",
        "/groups/join/%00",
        "/groups/join/" + "a" * 5000,
        "/groups/invitation/%C5%BE",
        "/groups/invitation/..",
        f"/groups/{GROUP}/member/x",
        f"/groups/{GROUP}/member/%00",
    ],
)
def test_hostile_tokens_are_invalid_links(client, group, path):
    assert client.get(path).status_code == 400
    assert client.post(path).status_code in (400, 405)


# --- the members' page -------------------------------------------------------------------


def make_member(email: str, status: str = "confirmed") -> Subscriber:
    group = db.session.scalar(select(MailingList).filter_by(slug=GROUP))
    subscriber = Subscriber(email=email, email_key=email, ascii_email=email, name="Člen")
    subscriber.subscriptions.append(Subscription(mailing_list=group, status=status))
    db.session.add(subscriber)
    db.session.commit()
    return subscriber


def member_path(subscriber: Subscriber, slug: str = GROUP) -> str:
    return f"/groups/{slug}/member/{tokens.preferences_token(subscriber)}"


@pytest.fixture
def history(group):
    """Two sent announcements, a draft, a past, a cancelled and a next meeting."""
    now = utcnow()
    db.session.add_all(
        [
            Issue(
                list_id=group.id,
                subject="Pozvánka na listopadové setkání",
                body="Probereme **kazuistiky**.",
                status="sent",
                number=1,
                started_at=datetime(2026, 11, 3, 8, 0),
            ),
            Issue(
                list_id=group.id,
                subject="Zápis z prosincového setkání",
                body="Zápis je v příloze. <script>alert(1)</script>",
                status="sent",
                number=2,
                started_at=datetime(2026, 12, 11, 9, 0),
            ),
            Issue(list_id=group.id, subject="Rozepsaný koncept", body="tajné", status="draft"),
            Meeting(
                list_id=group.id,
                uid="past@test",
                start=now - timedelta(days=3),
                end=now - timedelta(days=3, hours=-2),
                location="Stará zasedačka",
            ),
            Meeting(
                list_id=group.id,
                uid="cancelled@test",
                start=now + timedelta(days=2),
                end=now + timedelta(days=2, hours=2),
                location="Zrušená místnost",
                cancelled_at=now,
            ),
            Meeting(
                list_id=group.id,
                uid="next@test",
                start=datetime(2099, 12, 10, 8, 30),
                end=datetime(2099, 12, 10, 10, 30),
                location="Zasedací místnost 112",
                online_url="https://meet.example/psb",
                agenda="1. Akční plán\n2. Kazuistiky",
            ),
            Meeting(
                list_id=group.id,
                uid="later@test",
                start=datetime(2100, 1, 7, 8, 30),
                end=datetime(2100, 1, 7, 10, 30),
                location="Později",
            ),
        ]
    )
    db.session.flush()
    # Only meetings whose invitation went out show on the members' page.
    for uid in ("past@test", "cancelled@test", "next@test", "later@test"):
        meeting = db.session.scalar(select(Meeting).filter_by(uid=uid))
        db.session.add(
            Issue(list_id=group.id, subject=f"Pozvánka {uid}", body="Zveme vás.", status="sent",
                  started_at=datetime(2026, 10, 1, 8, 0), meeting=meeting,
                  meeting_method="REQUEST")
        )  # fmt: skip
    db.session.commit()


def test_member_page_lists_announcements_and_the_next_meeting(client, history):
    member = make_member("clen@ostrava.example")
    before = database_snapshot()
    response = client.get(member_path(member))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    newest = page.index("Zápis z prosincového setkání")
    older = page.index("Pozvánka na listopadové setkání")
    assert newest < older
    assert "11. prosince 2026" in page and "3. listopadu 2026" in page
    assert "<strong>kazuistiky</strong>" in page
    assert "<script>" not in page
    assert "Rozepsaný koncept" not in page
    assert "čtvrtek 10. prosince 2099 od 9:30 do 11:30" in page
    assert "Zasedací místnost 112" in page
    assert 'href="https://meet.example/psb"' in page
    assert "<li>Akční plán</li>" in page
    for hidden in ("Stará zasedačka", "Zrušená místnost", "Později"):
        assert hidden not in page
    assert "style=" not in page
    assert database_snapshot() == before


def test_member_page_without_meetings_or_announcements(client, group):
    member = make_member("clen@ostrava.example")
    page = client.get(member_path(member)).get_data(as_text=True)
    assert "Další setkání zatím není naplánované." in page
    assert "Skupina zatím žádné oznámení neposlala." in page


@pytest.mark.parametrize("status", ["pending", "requested", "unsubscribed", "declined"])
def test_member_page_refuses_who_is_not_a_confirmed_member(client, history, status):
    member = make_member("clen@ostrava.example", status=status)
    response = client.get(member_path(member))
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "jen členové" in page
    assert "Zápis z prosincového setkání" not in page


def test_member_page_refuses_a_newsletter_readers_token(client, history):
    reader = Subscriber(email="ctenar@example.cz", email_key="ctenar@example.cz")
    newsletter = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    reader.subscriptions.append(Subscription(mailing_list=newsletter, status="confirmed"))
    db.session.add(reader)
    db.session.commit()
    assert client.get(member_path(reader)).status_code == 403
    # A newsletter has no members' page, whoever asks.
    assert client.get(member_path(reader, "zpravodaj")).status_code == 404


def test_member_page_refuses_other_purposes(client, history):
    member = make_member("clen@ostrava.example")
    token = tokens.unsubscribe_token(member)
    assert client.get(f"/groups/{GROUP}/member/{token}").status_code == 400


def test_member_page_link_for_mails(app, group):
    member = make_member("clen@ostrava.example")
    url = member_page_url(member, group)
    assert url.startswith(f"http://zpravodaj.test/groups/{GROUP}/member/")


# --- member details on the preferences page ------------------------------------------------


def preferences_path(subscriber: Subscriber) -> str:
    return f"/preferences/{tokens.preferences_token(subscriber)}"


def stored(subscriber: Subscriber) -> Subscription:
    db.session.expire_all()
    return db.session.scalar(
        select(Subscription)
        .join(MailingList)
        .where(Subscription.subscriber_id == subscriber.id, MailingList.slug == GROUP)
    )


@pytest.fixture
def member(group) -> Subscriber:
    subscriber = make_member("clen@ostrava.example")
    row = stored(subscriber)
    row.organization, row.institution, row.function = "ÚP Ostrava", "urad-prace", "referentka"
    db.session.commit()
    return subscriber


def preferences_form(slug: str = GROUP, **fields) -> dict:
    data = {
        "name": "Člen",
        "group_shown": slug,
        "group": slug,
        f"g-{slug}-organization": "Úřad práce ČR, KoP Ostrava",
        f"g-{slug}-institution": "urad-prace",
        f"g-{slug}-function": "vedoucí oddělení",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


def test_preferences_page_shows_member_details(client, member):
    before = database_snapshot()
    page = client.get(preferences_path(member)).get_data(as_text=True)
    assert "<legend>Pracovní skupina sociálního bydlení</legend>" in page
    assert "Pracovní skupina Pracovní skupina" not in page  # the name says it already
    assert f'name="g-{GROUP}-organization"' in page
    assert 'value="ÚP Ostrava"' in page
    assert '<option value="urad-prace" selected>Úřad práce</option>' in page
    assert 'value="referentka"' in page
    assert f"/groups/{GROUP}/member/" in page
    assert "style=" not in page
    assert database_snapshot() == before


def test_member_edits_details_on_the_preferences_page(client, member):
    response = client.post(preferences_path(member), data=preferences_form())
    assert response.status_code == 200
    assert "Nastavení jsme uložili." in response.get_data(as_text=True)
    row = stored(member)
    assert (row.organization, row.institution, row.function, row.status) == (
        "Úřad práce ČR, KoP Ostrava",
        "urad-prace",
        "vedoucí oddělení",
        "confirmed",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("institution", "mafie", "Neznámý typ instituce."),
        ("organization", "x" * 201, "příliš dlouhý text"),
        ("function", "šéf\u202etajně", "nepovolené znaky"),
    ],
)
def test_bad_member_details_are_refused_in_czech(client, member, field, value, message):
    data = preferences_form(**{f"g-{GROUP}-{field}": value, "name": "Nové jméno"})
    response = client.post(preferences_path(member), data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    assert 'aria-invalid="true"' in page
    row = stored(member)
    assert (row.organization, row.institution, row.function) == (
        "ÚP Ostrava",
        "urad-prace",
        "referentka",
    )
    assert db.session.get(Subscriber, member.id).name == "Člen"  # nothing saved


def test_unticking_a_group_leaves_it(client, member):
    response = client.post(preferences_path(member), data=preferences_form(group=None))
    assert response.status_code == 200
    assert stored(member).status == "unsubscribed"
    assert "Jsem členem skupiny" not in response.get_data(as_text=True)


def test_a_post_without_the_group_fields_leaves_membership_alone(client, member):
    response = client.post(preferences_path(member), data={"name": "Člen", "list": ["novinky"]})
    assert response.status_code == 200
    row = stored(member)
    assert (row.status, row.organization) == ("confirmed", "ÚP Ostrava")


def test_waiting_join_request_details_are_editable_but_not_left(client, group):
    applicant = make_member("zadatel@ostrava.example", status="requested")
    page = client.get(preferences_path(applicant)).get_data(as_text=True)
    assert "čeká na schválení koordinátorem" in page
    response = client.post(preferences_path(applicant), data=preferences_form(group=None))
    assert response.status_code == 200
    row = stored(applicant)
    assert (row.status, row.organization) == ("requested", "Úřad práce ČR, KoP Ostrava")
