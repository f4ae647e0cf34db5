"""The API's own messages in the request's language (`?lang=en`, `Accept-Language: en`),
with the same stable codes in every language, and Czech requests answered with exactly
the Czech texts as before.

Every call goes through `tests.api.Api`, which checks the answer against the OpenAPI
document: a field code the document does not list fails there.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from service.api.errors import FIELD_CODES
from service.api.openapi import DOCUMENT
from service.clock import utcnow
from tests.api import Api
from tests.api.test_api import (  # noqa: F401  (fixtures)
    BODY,
    PRAGUE,
    coordinator,
    create_draft,
    editor,
    future_meeting,
    tokens,
)
from tests.conftest import add_confirmed_subscribers
from tests.i18n_checks import untranslated

ENGLISH = {"Accept-Language": "en-GB,en;q=0.9"}


def in_english(response) -> dict:
    """The answer's body, after checking that its messages carry no Czech."""
    body = response.get_json()
    texts = [body["error"], *body.get("errors", {}).values()]
    assert untranslated("\n".join(texts)) == [], body
    return body


# --- authentication and the request itself ---------------------------------------


def test_missing_and_revoked_tokens_in_english_and_czech(app, client):
    anonymous = Api(client)
    missing = anonymous.get("/api/v1/lists", headers=ENGLISH)
    assert missing.status_code == 401
    assert in_english(missing) == {
        "error": "The access token is missing (header Authorization: Bearer …).",
        "code": "unauthorized",
    }
    revoked = Api(client, "zpr_not-a-real-token").get("/api/v1/lists?lang=en")
    assert in_english(revoked)["error"] == "Invalid or revoked access token."
    assert revoked.get_json()["code"] == "unauthorized"

    czech = anonymous.get("/api/v1/lists")
    assert czech.get_json() == {
        "error": "Chybí přístupový token (hlavička Authorization: Bearer …).",
        "code": "unauthorized",
    }
    assert (
        Api(client, "zpr_not-a-real-token").get("/api/v1/lists").get_json()["error"]
        == "Neplatný nebo zrušený přístupový token."
    )


@pytest.mark.parametrize(
    ("body", "english", "czech"),
    [
        ("{", "The request body is not valid JSON.", "Tělo požadavku není platný JSON."),
        (
            "[1]",
            "The request body must be a JSON object.",
            "Tělo požadavku musí být JSON objekt.",
        ),
        (
            " ",
            "The request has no body: send a JSON object.",
            "Chybí tělo požadavku: pošlete JSON objekt.",
        ),
    ],
)
def test_unreadable_bodies_are_400_in_english_and_czech(app, editor, body, english, czech):  # noqa: F811
    path = "/api/v1/lists/zpravodaj/issues"
    answer = editor.post(path, data=body, content_type="application/json", headers=ENGLISH)
    assert answer.status_code == 400
    assert in_english(answer) == {"error": english, "code": "bad_request"}
    answer = editor.post(path, data=body, content_type="application/json")
    assert answer.get_json() == {"error": czech, "code": "bad_request"}


@pytest.mark.parametrize(
    ("method", "path", "english", "czech"),
    [
        ("POST", "/api/v1/lists/neni/issues", "No such list.", "Seznam neexistuje."),
        ("GET", "/api/v1/issues/999999", "No such issue.", "Vydání neexistuje."),
        ("POST", "/api/v1/meetings/999999/cancel", "No such meeting.", "Setkání neexistuje."),
    ],
)
def test_missing_things_are_404_in_english_and_czech(app, editor, method, path, english, czech):  # noqa: F811
    payload = {"subject": "A", "body": BODY} if method == "POST" else None
    answer = editor.call(method, f"{path}?lang=en", payload)
    assert answer.status_code == 404
    assert in_english(answer) == {"error": english, "code": "not_found"}
    assert editor.call(method, path, payload).get_json() == {"error": czech, "code": "not_found"}


# --- an issue's fields, its sending time and its state -------------------------------


def test_invalid_issue_fields_in_english_with_the_codes_of_czech(app, editor):  # noqa: F811
    payload = {"subject": "x" * 201, "body": " ", "preheader": "a\nb"}
    english = editor.post("/api/v1/lists/zpravodaj/issues?lang=en", payload)
    assert english.status_code == 422
    assert in_english(english) == {
        "error": "Some of the data is not valid.",
        "code": "invalid",
        "errors": {
            "subject": "The subject can have at most 200 characters.",
            "body": "Please enter the text of the issue.",
            "preheader": "The preheader must be one line, without control characters.",
        },
        "codes": {
            "subject": "invalid_subject",
            "body": "invalid_body",
            "preheader": "invalid_preheader",
        },
    }
    czech = editor.post("/api/v1/lists/zpravodaj/issues", payload).get_json()
    assert czech["error"] == "Některé údaje nejsou v pořádku."
    assert czech["errors"] == {
        "subject": "Předmět může mít nejvýše 200 znaků.",
        "body": "Vyplňte text vydání.",
        "preheader": "Perex musí být na jednom řádku a bez řídicích znaků.",
    }
    assert czech["codes"] == english.get_json()["codes"]


def _last_sunday_of_march_at_half_past_two() -> str:
    """A Prague time the spring clock change skips, within the scheduling horizon."""
    today = datetime.now(PRAGUE).date()
    year = today.year if today < datetime(today.year, 3, 20).date() else today.year + 1
    sunday = max(
        datetime(year, 3, day) for day in range(25, 32) if datetime(year, 3, day).weekday() == 6
    )
    return sunday.replace(hour=2, minute=30).isoformat()


@pytest.mark.parametrize(
    ("at", "english", "czech"),
    [
        (
            "zítra",
            "The time is not valid ISO 8601, e.g. 2026-12-10T09:00 or 2026-12-10T08:00:00Z.",
            "Čas není platný údaj ve formátu ISO 8601, "
            "např. 2026-12-10T09:00 nebo 2026-12-10T08:00:00Z.",
        ),
        (
            5,
            "Give the time as text in ISO 8601 format, "
            "e.g. 2026-12-10T09:00 or 2026-12-10T08:00:00Z.",
            "Čas zadejte jako text ve formátu ISO 8601, "
            "např. 2026-12-10T09:00 nebo 2026-12-10T08:00:00Z.",
        ),
        (
            "2020-01-01T09:00",
            "The sending time must be in the future.",
            "Čas odeslání musí být v budoucnosti.",
        ),
        (
            "2100-01-01T09:00",
            "Sending can be scheduled at most a year ahead.",
            "Odeslání lze naplánovat nejvýše rok dopředu.",
        ),
        (
            None,  # a time the spring clock change skips
            "This time does not exist because of the change to summer time; choose another.",
            "Tento čas kvůli změně na letní čas neexistuje; zvolte jiný.",
        ),
    ],
)
def test_send_times_refused_in_english_and_czech(app, editor, at, english, czech):  # noqa: F811
    issue_id = create_draft(editor)
    at = _last_sunday_of_march_at_half_past_two() if at is None else at
    answer = editor.post(f"/api/v1/issues/{issue_id}/send", {"at": at}, headers=ENGLISH)
    assert answer.status_code == 422
    body = in_english(answer)
    assert body["errors"] == {"at": english} and body["codes"] == {"at": "invalid_at"}
    czech_body = editor.post(f"/api/v1/issues/{issue_id}/send", {"at": at}).get_json()
    assert czech_body["errors"] == {"at": czech} and czech_body["codes"] == {"at": "invalid_at"}


def test_state_conflicts_in_english_and_czech(app, editor):  # noqa: F811
    issue_id = create_draft(editor)
    paused = editor.post(f"/api/v1/issues/{issue_id}/pause?lang=en")
    assert paused.status_code == 409
    assert in_english(paused) == {
        "error": "Only an issue being sent can be paused.",
        "code": "conflict",
    }
    assert editor.post(f"/api/v1/issues/{issue_id}/cancel").status_code == 200
    again = editor.post(f"/api/v1/issues/{issue_id}/cancel", headers=ENGLISH)
    assert in_english(again)["error"] == "The issue is already cancelled."
    czech = editor.post(f"/api/v1/issues/{issue_id}/cancel").get_json()
    assert czech == {"error": "Vydání už je zrušené.", "code": "conflict"}


def test_attachment_refusals_in_english_and_czech(app, coordinator):  # noqa: F811
    issue_id = create_draft(coordinator, "ostrava-psb")

    def upload(query: str = "", **kwargs):
        return coordinator.client.post(
            f"/api/v1/issues/{issue_id}/attachments{query}",
            headers={"Authorization": f"Bearer {coordinator.token}"},
            **kwargs,
        )

    program = {"file": (io.BytesIO(b"MZ..."), "program.exe")}
    refused = upload("?lang=en", data=program, content_type="multipart/form-data")
    assert refused.status_code == 422
    assert in_english(refused)["errors"] == {
        "file": "Only PDF, DOCX, ODT and XLSX files can be attached."
    }
    assert refused.get_json()["codes"] == {"file": "invalid_file"}
    program = {"file": (io.BytesIO(b"MZ..."), "program.exe")}
    czech = upload(data=program, content_type="multipart/form-data").get_json()
    assert czech["errors"] == {"file": "Přiložit lze jen soubory PDF, DOCX, ODT a XLSX."}
    not_a_form = upload("?lang=en", json={"file": "x"})
    assert in_english(not_a_form)["errors"] == {
        "file": "Send the file as multipart/form-data, in the field file."
    }


# --- meetings -------------------------------------------------------------------------


def test_invalid_meetings_in_english_with_the_codes_of_czech(app, coordinator):  # noqa: F811
    meeting = {
        "start": "2020-01-01T09:00",
        "end": "x",
        "location": 5,
        "online_url": "ftp://example.org",
        "rrule": 12,
    }
    payload = {"subject": "Setkání", "body": BODY, "meeting": meeting}
    english = coordinator.post("/api/v1/lists/ostrava-psb/issues?lang=en", payload)
    assert english.status_code == 422
    assert in_english(english)["errors"] == {
        "meeting.start": "The meeting must start in the future.",
        "meeting.end": "The time is not valid ISO 8601, e.g. 2026-12-10T09:30.",
        "meeting.location": "Place must be text.",
        "meeting.online_url": "The link to join online must begin with http:// or https://.",
    }
    codes = english.get_json()["codes"]
    assert codes == {name: f"invalid_{name}" for name in english.get_json()["errors"]}
    czech = coordinator.post("/api/v1/lists/ostrava-psb/issues", payload).get_json()
    assert czech["errors"] == {
        "meeting.start": "Začátek setkání musí být v budoucnosti.",
        "meeting.end": "Čas není platný údaj ve formátu ISO 8601, např. 2026-12-10T09:30.",
        "meeting.location": "Místo musí být text.",
        "meeting.online_url": "Odkaz na online připojení musí začínat http:// nebo https://.",
    }
    assert czech["codes"] == codes

    bad_rule = {"subject": "Setkání", "body": BODY, "meeting": future_meeting(rrule=12)}
    answer = coordinator.post("/api/v1/lists/ostrava-psb/issues", bad_rule, headers=ENGLISH)
    assert in_english(answer)["errors"] == {
        "meeting.rrule": "The repetition rule must be text, e.g. FREQ=MONTHLY;BYDAY=2TU."
    }
    bad_rule["meeting"]["rrule"] = "FREQ=HOURLY"
    answer = coordinator.post("/api/v1/lists/ostrava-psb/issues?lang=en", bad_rule)
    assert in_english(answer)["codes"] == {"meeting.rrule": "invalid_meeting.rrule"}
    assert answer.get_json()["errors"]["meeting.rrule"].startswith("A meeting can repeat")


def test_a_meeting_on_a_newsletter_is_refused_in_english_and_czech(app, editor):  # noqa: F811
    payload = {"subject": "A", "body": BODY, "meeting": future_meeting()}
    english = editor.post("/api/v1/lists/zpravodaj/issues", payload, headers=ENGLISH)
    assert in_english(english)["errors"] == {
        "meeting": "A meeting invitation can only be attached to a working group's announcement."
    }
    assert english.get_json()["codes"] == {"meeting": "invalid_meeting"}
    czech = editor.post("/api/v1/lists/zpravodaj/issues", payload).get_json()
    assert czech["errors"] == {
        "meeting": "Pozvánku na setkání lze připojit jen k oznámení pracovní skupiny."
    }


def test_meeting_conflicts_in_english_and_czech(app, coordinator, outbox):  # noqa: F811
    add_confirmed_subscribers("ostrava-psb", 1)
    issue_id = create_draft(coordinator, "ostrava-psb", meeting=future_meeting())
    meeting_id = coordinator.get(f"/api/v1/issues/{issue_id}").get_json()["meeting"]["id"]
    coordinator.post(f"/api/v1/issues/{issue_id}/send")
    base = f"/api/v1/meetings/{meeting_id}"

    one_date = coordinator.post(f"{base}/dates/2030-01-07T08:00:00Z/cancel?lang=en")
    assert one_date.status_code == 409
    assert in_english(one_date) == {
        "error": "The meeting does not repeat; change it as a whole.",
        "code": "conflict",
    }
    no_date = coordinator.post(f"{base}/dates/yesterday/cancel", headers=ENGLISH)
    assert no_date.status_code == 404
    assert in_english(no_date) == {"error": "The series has no such date.", "code": "not_found"}
    assert coordinator.post(f"{base}/dates/yesterday/cancel").get_json() == {
        "error": "Takový termín setkání v řadě není.",
        "code": "not_found",
    }

    assert coordinator.post(f"{base}/cancel").status_code == 202
    again = coordinator.post(f"{base}/cancel?lang=en")
    assert in_english(again) == {"error": "The meeting is already cancelled.", "code": "conflict"}
    moved = coordinator.post(f"{base}/update", future_meeting(), headers=ENGLISH)
    assert moved.status_code == 409
    assert in_english(moved)["error"] == "The meeting is cancelled; it can no longer be changed."
    assert coordinator.post(f"{base}/cancel").get_json() == {
        "error": "Setkání už je zrušené.",
        "code": "conflict",
    }
    assert coordinator.post(f"{base}/update", future_meeting()).get_json()["error"] == (
        "Setkání je zrušené; změnit ho už nelze."
    )


def test_a_meeting_already_held_cannot_be_cancelled_in_english(app, coordinator, monkeypatch):  # noqa: F811
    issue_id = create_draft(coordinator, "ostrava-psb", meeting=future_meeting())
    meeting_id = coordinator.get(f"/api/v1/issues/{issue_id}").get_json()["meeting"]["id"]
    later = utcnow() + timedelta(days=40)  # the meeting (in 20 days) is over by then
    monkeypatch.setattr("service.meetings.rules.utcnow", lambda: later)
    answer = coordinator.post(f"/api/v1/meetings/{meeting_id}/cancel?lang=en")
    assert answer.status_code == 409
    assert in_english(answer)["error"] == (
        "The meeting has already taken place; it cannot be cancelled."
    )


# --- the document ---------------------------------------------------------------------


def test_the_document_lists_every_field_code():
    schema = DOCUMENT["components"]["schemas"]["Error"]["properties"]["codes"]
    listed = schema["additionalProperties"]["enum"]
    assert listed == FIELD_CODES
    for name in ("subject", "at", "file", "meeting", "meeting.start", "rrule", "location"):
        assert f"invalid_{name}" in listed
    assert "invalid_email" in listed  # the codes listed before stay listed
    assert "English" in DOCUMENT["info"]["description"]


def test_the_api_neither_keeps_nor_reads_the_language_cookie(app, client, editor):  # noqa: F811
    """An API client says its language in each call: a `?lang=en` call sets no cookie, and
    the pages' `lang` cookie does not turn a later call without `?lang=` into English."""
    english = editor.get("/api/v1/issues/999999?lang=en")
    assert english.get_json()["error"] == "No such issue."
    assert "Set-Cookie" not in english.headers
    client.set_cookie("lang", "en")  # as a visitor's browser keeps it after ?lang=en on a page
    czech = editor.get("/api/v1/issues/999999")
    assert czech.get_json()["error"] == "Vydání neexistuje."
    assert "Accept-Language" in czech.headers["Vary"]
