"""The admin's working-group and meeting pages in English (lists, a group, a new group, a
meeting's attendance, the printable attendance sheet, the CSV), their forms' errors and
flashes, with no Czech left over; and in Czech as before, with Czech's three plural forms."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask_babel import refresh
from sqlalchemy import select, update

from service.admin.dashboard import prague
from service.clock import utcnow
from service.extensions import db
from service.meetings import occurrences, series
from service.models import Meeting, Subscriber
from tests.admin.test_groups import chomutov, requested  # noqa: F401  (chomutov: a fixture)
from tests.admin.test_languages import english
from tests.conftest import add_confirmed_subscribers, csrf_token_of, log_in
from tests.i18n_checks import untranslated, visible_text
from tests.meetings.test_answers import invited, rsvp_link, set_details, the_meeting  # noqa: F401
from tests.meetings.test_meetings import members  # noqa: F401  (a fixture)
from tests.meetings.test_occurrences import second_tuesday, series_invitation

GROUP = "/admin/groups/ostrava-psb"
# Data on these pages, not interface: the seeded group, the meeting's subject and place.
GROUP_DATA = (
    "Pracovní skupina sociálního bydlení",
    "Setkání PSB v prosinci",
    "Magistrát města Ostravy, zasedací místnost 118",
    "Expertní skupina Chomutov",
    "Čeština",  # the language switch
)


def page_text(response) -> str:
    """A page answered after an English one (the ?lang=en choice is in the cookie), checked
    for Czech leftovers."""
    page = response.get_data(as_text=True)
    assert '<html lang="en">' in page
    assert untranslated(visible_text(page), *GROUP_DATA) == [], page[:3000]
    return html.unescape(" ".join(page.split()))


def error_of(page: str, field: str) -> str:
    """The error shown under a form field (`field_row`'s `<span id="<field>-error">`)."""
    found = re.search(rf'<span class="error" id="{field}-error">([^<]*)</span>', page)
    assert found, f"no error under {field}"
    return found.group(1)


# --- the list of groups and one group ------------------------------------------------------


def test_groups_list_in_english(client, accounts, chomutov):  # noqa: F811
    add_confirmed_subscribers("ostrava-psb", 2)
    requested("petr@ostrava.example")
    log_in(client, accounts.admin.email)
    page = " ".join(english(client, "/admin/groups", *GROUP_DATA).split())
    assert "<h1>Working groups</h1>" in page and ">New group</a>" in page
    assert "<caption>2 groups</caption>" in page
    assert '<td data-count="members">2 members</td>' in page
    assert '<td data-count="members">0 members</td>' in page
    assert ">1 request</span>" in page
    assert "by invitation only" in page or "public (anyone may ask to join)" in page


def test_groups_list_counts_in_czech_plural_forms(client, accounts, chomutov):  # noqa: F811
    add_confirmed_subscribers("ostrava-psb", 2)
    requested("petr@ostrava.example")
    requested("jana@ostrava.example")
    log_in(client, accounts.admin.email)
    page = " ".join(client.get("/admin/groups").get_data(as_text=True).split())
    assert "<h1>Pracovní skupiny</h1>" in page and "<caption>2 skupiny</caption>" in page
    assert '<td data-count="members">2 členové</td>' in page
    assert '<td data-count="members">0 členů</td>' in page
    assert ">2 žádosti</span>" in page


def test_empty_groups_list_in_english(client, accounts):
    db.session.delete(accounts.coordinator.lists[0])
    db.session.commit()
    log_in(client, accounts.admin.email)
    page = " ".join(english(client, "/admin/groups").split())
    assert "There are no groups yet. Create one with the “New group” button" in page
    assert "<code>zpravodaj lists create SLUG --name NAME --kind group</code>" in page


def test_group_page_in_english(client, accounts):
    add_confirmed_subscribers("ostrava-psb", 2)
    requested("petr@ostrava.example")
    log_in(client, accounts.admin.email)
    page = " ".join(english(client, GROUP, *GROUP_DATA).split())
    for text in (
        '<h2 id="requests-heading">Membership requests</h2>',
        "<caption>1 request awaiting a decision</caption>",
        ">Approve</button>",
        ">Decline</button>",
        '<h2 id="members-heading">Members and invited</h2>',
        "<caption>2 people</caption>",
        "non-profit organisation",  # the request's institution type
        '<span class="member-status member-status-confirmed">member</span>',
        '<h2 id="invite-heading">Invite a member</h2>',
        "Invite several people from a CSV file",
        "(the institution type: its key, e.g. “ospod” or “nno”, or its Czech name)",
        ">Send the invitations</button>",
        '<h2 id="coordinators-heading">Coordinators</h2>',
        '<h2 id="details-heading">Group details</h2>',
        '<option selected value="cs">Czech</option>',
        ">Save the details</button>",
    ):
        assert text in page, text
    assert "2 members ·" in page
    assert (
        '<button type="submit" class="button-link">Sign out</button>' in page
    )  # not "Unsubscribe"


def test_group_forms_errors_and_flashes_in_english(client, accounts, outbox):
    request_id = requested("petr@ostrava.example")
    log_in(client, accounts.admin.email)
    english(client, GROUP, *GROUP_DATA)  # the choice is remembered for the posts below
    token = csrf_token_of(client, GROUP)

    refused = client.post(
        f"{GROUP}/invite", data={"email": "", "institution": "nno", "csrf_token": token}
    )
    assert refused.status_code == 422
    page = page_text(refused)
    assert error_of(page, "email") == "Please enter the e-mail address of the person to invite."
    assert '<option selected value="nno">non-profit organisation</option>' in page

    too_long = client.post(
        f"{GROUP}/invite",
        data={"email": "eva@ostrava.example", "organization": "x" * 201, "csrf_token": token},
    )
    assert too_long.status_code == 422
    assert error_of(page_text(too_long), "organization") == (
        "Field cannot be longer than 200 characters."
    )
    bad_address = client.post(f"{GROUP}/invite", data={"email": "eva@", "csrf_token": token})
    assert error_of(page_text(bad_address), "email") == "Invalid e-mail address."
    unknown_kind = client.post(
        f"{GROUP}/invite",
        data={"email": "eva@ostrava.example", "institution": "mimozemstan", "csrf_token": token},
    )
    assert error_of(page_text(unknown_kind), "institution") == "Unknown institution type."

    sent = client.post(
        f"{GROUP}/invite", data={"email": "eva@ostrava.example", "csrf_token": token}
    )
    assert sent.status_code == 302
    assert "The invitation to eva@ostrava.example is on its way." in page_text(client.get(GROUP))

    client.post(f"{GROUP}/members/{request_id}/approve", data={"csrf_token": token})
    assert (
        "The request of Petr Svoboda (petr@ostrava.example) is approved; "
        "they will get an e-mail about it." in page_text(client.get(GROUP))
    )
    client.post(f"{GROUP}/members/{request_id}/approve", data={"csrf_token": token})
    assert "Nothing changed: that was done already." in page_text(client.get(GROUP))

    details = client.post(
        f"{GROUP}/details", data={"name": " ", "visibility": "public", "csrf_token": token}
    )
    assert details.status_code == 422
    assert error_of(page_text(details), "name") == "Please enter a name."
    saved = client.post(
        f"{GROUP}/details",
        data={"name": "PSB Ostrava", "visibility": "invite", "language": "en", "csrf_token": token},
    )
    assert saved.status_code == 302
    assert "The group's details are saved." in page_text(client.get(GROUP))

    client.post(f"{GROUP}/coordinators", data={"user_id": "x", "csrf_token": token})
    assert "Choose a coordinator account." in page_text(client.get(GROUP))
    client.post(
        f"{GROUP}/coordinators",
        data={"user_id": str(accounts.coordinator.id), "action": "remove", "csrf_token": token},
    )
    assert "koordinator@ostrava.example no longer coordinates the group." in page_text(
        client.get(GROUP)
    )


def test_a_csv_invitation_report_in_english(client, accounts, outbox):
    log_in(client, accounts.admin.email)
    english(client, GROUP, *GROUP_DATA)
    csv_file = b"email,institution\neva@ostrava.example,nno\nadam@ostrava.example,ospod\n"
    response = client.post(
        f"{GROUP}/invite-csv",
        data={
            "file": (io.BytesIO(csv_file), "pozvani.csv"),
            "csrf_token": csrf_token_of(client, GROUP),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert '<p data-count="invited">2 invitations sent.</p>' in page_text(response)
    missing = client.post(
        f"{GROUP}/invite-csv",
        data={"csrf_token": csrf_token_of(client, GROUP)},
        content_type="multipart/form-data",
    )
    assert missing.status_code == 422
    page = page_text(missing)
    assert "The invitations were not sent:" in page
    assert "Choose a CSV file with the people to invite." in page
    latin2 = client.post(
        f"{GROUP}/invite-csv",
        data={
            "file": (io.BytesIO("email\nžofie@ostrava.example\n".encode("iso-8859-2")), "a.csv"),
            "csrf_token": csrf_token_of(client, GROUP),
        },
        content_type="multipart/form-data",
    )
    assert latin2.status_code == 422
    assert "The file is not in UTF-8. Please save it as “CSV UTF-8”" in page_text(latin2)


def test_membership_refusals_under_their_fields_in_czech(client, accounts, outbox):
    """A refusal from `membership` names its field, so it shows there (in Czech as before)."""
    log_in(client, accounts.admin.email)
    token = csrf_token_of(client, GROUP)
    unknown_kind = client.post(
        f"{GROUP}/invite",
        data={"email": "eva@ostrava.example", "institution": "mimozemstan", "csrf_token": token},
    )
    page = unknown_kind.get_data(as_text=True)
    assert error_of(page, "institution") == "Neznámý typ instituce."
    assert "Vyplňte e-mail pozvaného." in client.post(
        f"{GROUP}/invite", data={"email": "", "csrf_token": token}
    ).get_data(as_text=True)


# --- a new group ---------------------------------------------------------------------------


def test_new_group_page_errors_and_flash_in_english(client, accounts):
    log_in(client, accounts.admin.email)
    page = " ".join(english(client, "/admin/groups/new", *GROUP_DATA).split())
    for text in (
        "<h1>New working group</h1>",
        "Short name for addresses",
        "Lower-case letters without accents, digits and hyphens; it appears in links.",
        "Hold Ctrl to choose several coordinators.",
        '<option value="en">English</option>',
        ">Create the group</button>",
    ):
        assert text in page, text
    token = csrf_token_of(client, "/admin/groups/new")
    taken = client.post(
        "/admin/groups/new",
        data={"name": "Druhá", "slug": "ostrava-psb", "visibility": "public", "csrf_token": token},
    )
    assert taken.status_code == 422
    assert (
        '<span class="error">A list or group with the short name “ostrava-psb” already exists.'
        in page_text(taken)
    )
    empty = client.post(
        "/admin/groups/new",
        data={"name": "", "slug": "", "visibility": "public", "csrf_token": token},
    )
    page = page_text(empty)
    assert '<span class="error">Please enter a name.</span>' in page
    assert '<span class="error">Please enter a short name, e.g. ostrava-psb.</span>' in page
    created = client.post(
        "/admin/groups/new",
        data={"name": "Usti group", "slug": "usti", "visibility": "public", "csrf_token": token},
    )
    assert created.status_code == 302
    assert "The group has been created: Usti group." in page_text(client.get("/admin/groups/usti"))


# --- a meeting's attendance ----------------------------------------------------------------


def _answer(client, invited, email: str, label: str, choice: str) -> None:  # noqa: F811
    client.post(rsvp_link(invited[email], label).split("?")[0], data={"odpoved": choice})


def test_meeting_attendance_page_sheet_and_csv_in_english(app, client, accounts, invited):  # noqa: F811
    set_details("odberatel0@example.cz", "Charita Ostrava", "ospod")
    set_details("odberatel1@example.cz", "Charita Ostrava", "nno")
    set_details("odberatel2@example.cz", "Magistrat", "obec-socialni")
    _answer(client, invited, "odberatel0@example.cz", "Přijdu", "prijdu")
    _answer(client, invited, "odberatel1@example.cz", "Nepřijdu", "neprijdu")
    meeting = the_meeting()
    log_in(client, accounts.coordinator.email)
    path = f"/admin/meetings/{meeting.id}/attendance"
    page = " ".join(english(client, path, *GROUP_DATA).split())
    for text in (
        "<h1>Attendance: Setkání PSB v prosinci</h1>",
        'Coming: <strong data-count="accepted">1</strong>',
        'Maybe: <strong data-count="tentative">0</strong>',
        'Not coming: <strong data-count="declined">1</strong>',
        'No answer: <strong data-count="needs_action">1</strong>',
        ">Download CSV</a>",
        ">Attendance sheet to print</a>",
        "Who is missing from the table",
        "Nobody has confirmed yet for: <strong>municipal office – social department, "
        "non-profit organisation</strong>.",
        "Not represented in the group:",
        "Labour Office",
        '<span class="muted">(1 of 1 coming)</span>',
        '<span class="muted">(0 of 1 coming)</span>',
        '<th scope="col">Answer</th>',
        "<td>I'll come</td>",
        "Once the meeting has begun, tick here who came.",
    ):
        assert text in page, text
    assert " from " in page and " to " in page  # the meeting's time, in English

    sheet = client.get(f"{path}/sheet").get_data(as_text=True)
    assert '<html lang="en">' in sheet
    assert untranslated(visible_text(sheet), *GROUP_DATA, "Čtenář") == []
    sheet = " ".join(sheet.split())
    assert "<title>Attendance sheet: Setkání PSB v prosinci</title>" in sheet
    # The group's name already says "Pracovní skupina": no "working group" before it.
    assert "<strong>Setkání PSB v prosinci</strong> – Pracovní skupina sociálního bydlení" in sheet
    assert "<th>Signature</th>" in sheet and "OSPOD (child protection)" in sheet

    rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"{path}.csv").get_data(as_text=True).lstrip("\ufeff"))
        )
    )
    by_email = {row["email"]: row for row in rows}
    assert by_email["odberatel1@example.cz"]["institution"] == "non-profit organisation"
    assert by_email["odberatel1@example.cz"]["answer"] == "declined"


def test_attendance_ticks_and_minutes_in_english_and_czech(app, client, accounts, invited):  # noqa: F811
    meeting = the_meeting()
    log_in(client, accounts.coordinator.email)
    path = f"/admin/meetings/{meeting.id}/attendance"
    english(client, path, *GROUP_DATA)
    token = csrf_token_of(client, path)
    early = client.post(path, data={"csrf_token": token})
    assert early.status_code == 409
    assert "Attendance can only be recorded once the meeting has begun." in page_text(early)
    minutes_early = client.post(f"/admin/meetings/{meeting.id}/minutes", data={"csrf_token": token})
    assert minutes_early.status_code == 302
    assert "The minutes can only be written once the meeting has begun." in page_text(
        client.get(path)
    )

    db.session.execute(update(Meeting).values(start=utcnow() - timedelta(hours=1)))
    db.session.commit()
    ids = list(db.session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    ticked = client.post(path, data={"csrf_token": token, "present": [str(ids[0]), str(ids[1])]})
    assert ticked.status_code == 302
    page = page_text(client.get(path))
    assert "Attendance saved: 2 of 3 came." in page
    assert (
        ">Save who came</button>" in page and ">Write the minutes of the meeting</button>" in page
    )
    rows = client.get(f"{path}.csv").get_data(as_text=True).lstrip("\ufeff")
    assert sorted(row["attended"] for row in csv.DictReader(io.StringIO(rows))) == [
        "no",
        "yes",
        "yes",
    ]
    minutes = client.post(f"/admin/meetings/{meeting.id}/minutes", data={"csrf_token": token})
    assert minutes.status_code == 302 and "/admin/issues/" in minutes.headers["Location"]

    client.get(f"{path}?lang=cs")
    client.post(path, data={"csrf_token": token, "present": [str(ids[0]), str(ids[1])]})
    page = " ".join(client.get(path).get_data(as_text=True).split())
    assert "Účast je uložena: přišli 2 z 3." in page
    client.post(path, data={"csrf_token": token, "present": [str(ids[0])]})
    assert "Účast je uložena: přišel 1 z 3." in client.get(path).get_data(as_text=True)
    rows = client.get(f"{path}.csv").get_data(as_text=True).lstrip("\ufeff")
    assert sorted(row["attended"] for row in csv.DictReader(io.StringIO(rows))) == [
        "ano",
        "ne",
        "ne",
    ]


def test_dates_in_each_language(app):
    """The admin's dates: a day alone ("10 Dec 2026"), and an input's ISO value unchanged."""
    moment = datetime(2026, 12, 10, 8, 30)  # naive UTC: 9:30 in Prague
    with app.test_request_context("/admin/?lang=en"):
        assert prague(moment, "%-d. %-m. %Y") == "10 Dec 2026"
        assert prague(moment) == "10 Dec 2026, 09:30"
        assert prague(moment, "%Y-%m-%dT%H:%M") == "2026-12-10T09:30"
    with app.test_request_context("/admin/"):
        refresh()  # the locale is cached per app context, which the test shares
        assert prague(moment, "%-d. %-m. %Y") == "10. 12. 2026"
        assert prague(moment, "%Y-%m-%dT%H:%M") == "2026-12-10T09:30"


def test_a_series_attendance_dates_in_english(app, client, accounts, outbox, members):  # noqa: F811
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    dates = occurrences.listed(meeting)
    series.cancel_occurrence(meeting, dates[1].recurrence_id, None)
    db.session.commit()
    log_in(client, accounts.coordinator.email)
    path = f"/admin/meetings/{meeting.id}/attendance"
    page = " ".join(english(client, path, *GROUP_DATA, "Pravidelné setkání PSB").split())
    assert '<nav class="meeting-dates" aria-label="Dates of the recurring meeting">' in page
    first = dates[0].start.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Prague"))
    second = dates[1].start.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Prague"))
    assert f"<p>Date: <strong>{format_date(first, 'd MMM y', locale='en')}</strong>" in page
    assert f">{format_date(second, 'd MMM y', locale='en')}</a> (cancelled)" in page
    czech = " ".join(client.get(f"{path}?lang=cs").get_data(as_text=True).split())
    assert f"<p>Termín: <strong>{first.day}. {first.month}. {first.year}</strong>" in czech
    assert f">{second.day}. {second.month}. {second.year}</a> (zrušeno)" in czech
