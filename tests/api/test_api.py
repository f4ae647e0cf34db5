"""The editors' JSON API with real parts: tokens, RQ worker, Redis, SMTP sink, SQLite/PostgreSQL.

Every call goes through `tests.api.Api`, which validates the answer against
the OpenAPI document, so each test here also checks the document.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from service.accounts import create_token
from service.clock import utcnow
from service.extensions import db
from service.models import ApiToken, Issue, MailingList
from tests.api import Api
from tests.conftest import add_confirmed_subscribers, run_jobs

BODY = "Dobrý den,\n\nv tomto vydání **nové byty** v Ostravě.\n"
PRAGUE = ZoneInfo("Europe/Prague")


@pytest.fixture
def app_config(app_config, request):
    """The suite's config plus what a test passes by indirect parametrisation."""
    return {**app_config, **getattr(request, "param", {})}


@pytest.fixture
def tokens(accounts) -> dict[str, str]:
    made = {
        "admin": create_token(accounts.admin),
        "editor": create_token(accounts.editor),
        "coordinator": create_token(accounts.coordinator),
    }
    db.session.commit()
    return made


@pytest.fixture
def editor(client, tokens) -> Api:
    return Api(client, tokens["editor"])


@pytest.fixture
def coordinator(client, tokens) -> Api:
    return Api(client, tokens["coordinator"])


def create_draft(api: Api, slug: str = "zpravodaj", **fields) -> int:
    payload = {"subject": "Zpravodaj 12/2026", "body": BODY, **fields}
    response = api.post(f"/api/v1/lists/{slug}/issues", payload)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


# --- lists ---------------------------------------------------------------------


def test_lists_show_subscriber_counts_per_status(app, editor):
    add_confirmed_subscribers("zpravodaj", 3)
    response = editor.get("/api/v1/lists")
    assert response.status_code == 200
    by_slug = {row["slug"]: row for row in response.get_json()["lists"]}
    assert set(by_slug) == {"zpravodaj", "novinky", "ostrava-psb"}
    assert by_slug["zpravodaj"]["counts"] == {
        "pending": 0,
        "confirmed": 3,
        "unsubscribed": 0,
        "bounced": 0,
    }
    assert by_slug["zpravodaj"]["name"] == "Zpravodaj sociálního bydlení"
    assert by_slug["ostrava-psb"]["kind"] == "group"


def test_coordinator_sees_only_own_groups(app, coordinator):
    response = coordinator.get("/api/v1/lists")
    assert [row["slug"] for row in response.get_json()["lists"]] == ["ostrava-psb"]


# --- the whole flow ----------------------------------------------------------


def test_create_send_and_deliver_reaches_every_confirmed_subscriber(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 5)

    created = editor.post(
        "/api/v1/lists/zpravodaj/issues",
        {"subject": "Zpravodaj 12/2026", "body": BODY, "preheader": "Co je nového"},
    )
    assert created.status_code == 201
    issue = created.get_json()
    assert issue["status"] == "draft"
    assert issue["list"] == "zpravodaj"
    assert created.headers["Location"].endswith(f"/api/v1/issues/{issue['id']}")

    sent = editor.post(f"/api/v1/issues/{issue['id']}/send")
    assert sent.status_code == 202
    assert sent.get_json()["status"] == "sending"
    assert sent.get_json()["counts"]["total"] == 5

    run_jobs(app)

    state = editor.get(f"/api/v1/issues/{issue['id']}").get_json()
    assert state["status"] == "sent"
    assert state["number"] == 1
    assert state["counts"]["sent"] == state["counts"]["total"] == 5
    assert state["counts"]["pending"] == 0
    assert state["finished_at"] is not None
    assert len(outbox.mails) == 5
    assert {m.message["Subject"] for m in outbox.mails} == {"Zpravodaj 12/2026"}


def test_send_with_empty_json_object_also_sends_now(app, editor):
    issue_id = create_draft(editor)
    response = editor.post(f"/api/v1/issues/{issue_id}/send", {})
    assert response.status_code == 202
    assert response.get_json()["status"] == "sending"


def test_created_issue_is_authored_by_the_token_account(app, editor, accounts):
    issue_id = create_draft(editor)
    assert db.session.get(Issue, issue_id).created_by_id == accounts.editor.id


# --- scheduling ----------------------------------------------------------------


def test_time_without_offset_is_prague_time_and_stored_as_utc(app, editor):
    issue_id = create_draft(editor)
    local = (datetime.now(PRAGUE) + timedelta(days=10)).replace(
        hour=9, minute=30, second=0, microsecond=0, tzinfo=None
    )
    response = editor.post(f"/api/v1/issues/{issue_id}/send", {"at": local.isoformat()})
    assert response.status_code == 202
    expected_utc = local.replace(tzinfo=PRAGUE).astimezone(UTC)
    body = response.get_json()
    assert body["status"] == "scheduled"
    assert datetime.fromisoformat(body["scheduled_at"]) == expected_utc
    assert body["scheduled_at"].endswith("+00:00")
    db.session.expire_all()
    assert db.session.get(Issue, issue_id).scheduled_at == expected_utc.replace(tzinfo=None)


def test_time_skipped_by_the_spring_clock_change_is_refused(app, editor):
    issue_id = create_draft(editor)
    # 02:30 on the last Sunday of March does not exist in Prague; the next such
    # Sunday within the scheduling horizon.
    today = datetime.now(PRAGUE).date()
    year = today.year if today < datetime(today.year, 3, 20).date() else today.year + 1
    last_sunday = max(
        datetime(year, 3, day) for day in range(25, 32) if datetime(year, 3, day).weekday() == 6
    )
    gap = last_sunday.replace(hour=2, minute=30).isoformat()
    response = editor.post(f"/api/v1/issues/{issue_id}/send", {"at": gap})
    assert response.status_code == 422
    assert "neexistuje" in response.get_json()["errors"]["at"]
    db.session.expire_all()
    assert db.session.get(Issue, issue_id).status == "draft"


def test_time_with_offset_is_taken_as_given(app, editor):
    issue_id = create_draft(editor)
    at = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    response = editor.post(
        f"/api/v1/issues/{issue_id}/send", {"at": at.isoformat().replace("+00:00", "Z")}
    )
    assert response.status_code == 202
    db.session.expire_all()
    assert db.session.get(Issue, issue_id).scheduled_at == at.replace(tzinfo=None)


def test_scheduled_issue_can_be_rescheduled_and_cancelled(app, editor):
    issue_id = create_draft(editor)
    first = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    second = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    assert editor.post(f"/api/v1/issues/{issue_id}/send", {"at": first}).status_code == 202
    again = editor.post(f"/api/v1/issues/{issue_id}/send", {"at": second.isoformat()})
    assert again.status_code == 202
    assert datetime.fromisoformat(again.get_json()["scheduled_at"]) == second
    cancelled = editor.post(f"/api/v1/issues/{issue_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2020-01-01T09:00", "Čas odeslání musí být v budoucnosti."),
        ("zítra v devět", "ISO 8601"),
        ("", "ISO 8601"),
        (12, "ISO 8601"),
        (["2030-01-01"], "ISO 8601"),
        ({"date": "2030-01-01"}, "ISO 8601"),
        (True, "ISO 8601"),
        ("9999-12-31T23:59:59-23:59", "ISO 8601"),
        ("0001-01-01T00:00:00+14:00", "ISO 8601"),
        ("2026-13-45T25:61", "ISO 8601"),
        ("2" * 10_000, "ISO 8601"),
        ("9000-01-01T09:00", "nejvýše rok dopředu"),
    ],
)
def test_unusable_send_time_is_422_in_czech(app, editor, at, message):
    issue_id = create_draft(editor)
    response = editor.post(f"/api/v1/issues/{issue_id}/send", {"at": at})
    assert response.status_code == 422
    assert message in response.get_json()["errors"]["at"]
    db.session.expire_all()
    assert db.session.get(Issue, issue_id).status == "draft"


# --- pause, resume, cancel and their conflicts ---------------------------------


def test_pause_resume_cancel_of_a_sending_issue(app, editor):
    add_confirmed_subscribers("zpravodaj", 3)
    issue_id = create_draft(editor)
    editor.post(f"/api/v1/issues/{issue_id}/send")

    paused = editor.post(f"/api/v1/issues/{issue_id}/pause")
    assert paused.status_code == 200
    assert paused.get_json()["status"] == "paused"
    resumed = editor.post(f"/api/v1/issues/{issue_id}/resume")
    assert resumed.status_code == 200
    assert resumed.get_json()["status"] == "sending"
    cancelled = editor.post(f"/api/v1/issues/{issue_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"


def test_paused_issue_completes_after_resume(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 4)
    issue_id = create_draft(editor)
    editor.post(f"/api/v1/issues/{issue_id}/send")
    editor.post(f"/api/v1/issues/{issue_id}/pause")
    run_jobs(app)
    assert editor.get(f"/api/v1/issues/{issue_id}").get_json()["counts"]["sent"] < 4
    editor.post(f"/api/v1/issues/{issue_id}/resume")
    run_jobs(app)
    state = editor.get(f"/api/v1/issues/{issue_id}").get_json()
    assert state["status"] == "sent"
    assert state["counts"]["sent"] == 4
    assert len(outbox.mails) == 4


@pytest.mark.parametrize(
    ("steps", "refused", "message"),
    [
        ([], "pause", "Pozastavit lze jen vydání, které se odesílá."),
        ([], "resume", "Pokračovat lze jen v pozastaveném vydání."),
        (["send"], "send", "Odeslat lze jen koncept nebo naplánované vydání."),
        (["send"], "resume", "Pokračovat lze jen v pozastaveném vydání."),
        (["cancel"], "cancel", None),
        (["cancel"], "send", None),
    ],
)
def test_action_in_wrong_state_is_409_in_czech(app, editor, steps, refused, message):
    add_confirmed_subscribers("zpravodaj", 2)
    issue_id = create_draft(editor)
    for step in steps:
        assert editor.post(f"/api/v1/issues/{issue_id}/{step}").status_code < 300
    before = editor.get(f"/api/v1/issues/{issue_id}").get_json()["status"]

    response = editor.post(f"/api/v1/issues/{issue_id}/{refused}")

    assert response.status_code == 409
    assert response.get_json()["error"]
    if message:
        assert response.get_json()["error"] == message
    assert editor.get(f"/api/v1/issues/{issue_id}").get_json()["status"] == before


def test_sent_issue_cannot_be_cancelled(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 1)
    issue_id = create_draft(editor)
    editor.post(f"/api/v1/issues/{issue_id}/send")
    run_jobs(app)
    response = editor.post(f"/api/v1/issues/{issue_id}/cancel")
    assert response.status_code == 409
    assert response.get_json()["error"] == "Odeslané vydání už zrušit nelze."
    assert response.get_json()["code"] == "conflict"  # stable beside the Czech text


# --- authentication --------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic cmVkYWtjZTpoZXNsbw=="},
        {"Authorization": "Bearer zpr_not-a-real-token"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer zpr_\x01"},
    ],
)
def test_missing_or_unknown_token_is_401_with_bearer_challenge(app, client, tokens, headers):
    api = Api(client)
    for method, path in [
        ("GET", "/api/v1/lists"),
        ("POST", "/api/v1/lists/zpravodaj/issues"),
        ("GET", "/api/v1/issues/1"),
        ("POST", "/api/v1/issues/1/send"),
    ]:
        response = api.call(method, path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"]


def test_a_token_with_a_nul_is_refused_by_the_input_guard(app, client):
    for method, path in [("GET", "/api/v1/lists"), ("GET", "/api/v1/openapi.json")]:
        response = Api(client).call(method, path, headers={"Authorization": "Bearer zpr_\x00"})
        assert response.status_code == 400
        assert response.get_json()["error"] == "Požadavek se nepodařilo přečíst."


def test_revoked_token_is_401(app, client, accounts, runner):
    token = create_token(accounts.editor)
    db.session.commit()
    api = Api(client, token)
    assert api.get("/api/v1/lists").status_code == 200

    result = runner.invoke(args=["tokens", "revoke", token[:12]])
    assert result.exit_code == 0, result.output

    response = api.get("/api/v1/lists")
    assert response.status_code == 401
    assert response.get_json()["error"] == "Neplatný nebo zrušený přístupový token."


def test_token_of_a_deactivated_account_is_401(app, client, accounts, tokens):
    accounts.editor.active = False
    db.session.commit()
    assert Api(client, tokens["editor"]).get("/api/v1/lists").status_code == 401


def test_tokens_are_stored_only_as_their_hash(app, tokens):
    token = tokens["editor"]
    rows = db.session.execute(text("SELECT * FROM api_token")).all()
    dump = repr(rows)
    assert token not in dump
    assert token[len("zpr_") :] not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump


def test_use_of_a_token_is_recorded(app, editor, tokens):
    editor.get("/api/v1/lists")
    digest = hashlib.sha256(tokens["editor"].encode()).hexdigest()
    db.session.expire_all()
    row = db.session.scalar(select(ApiToken).filter_by(token_hash=digest))
    assert row.last_used_at is not None
    assert row.last_used_at <= utcnow()


def test_openapi_document_needs_no_token(app, client):
    response = Api(client).get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.1")


# --- coordinators ------------------------------------------------------------


def test_coordinator_creates_and_sends_on_own_group(app, coordinator, outbox):
    add_confirmed_subscribers("ostrava-psb", 2)
    issue_id = create_draft(coordinator, "ostrava-psb", subject="Pozvánka na setkání skupiny")
    assert coordinator.post(f"/api/v1/issues/{issue_id}/send").status_code == 202
    run_jobs(app)
    assert coordinator.get(f"/api/v1/issues/{issue_id}").get_json()["counts"]["sent"] == 2


def _answer(response) -> tuple[int, object, dict[str, str]]:
    """What a caller can compare between two answers: status, body and headers but Date
    and the request id (fresh for every request, whatever it asked)."""
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in {"date", "x-request-id"}
    }
    return response.status_code, response.get_json(), headers


def _other_group_with_a_meeting(editor: Api) -> tuple[int, int]:
    """A second working group (Chomutov) with a draft meeting invitation: (issue id, meeting id)."""
    db.session.add(MailingList(slug="chomutov-os", name="Chomutov: odborná skupina", kind="group"))
    db.session.commit()
    issue_id = create_draft(editor, "chomutov-os", meeting=future_meeting())
    meeting_id = editor.get(f"/api/v1/issues/{issue_id}").get_json()["meeting"]["id"]
    return issue_id, meeting_id


ISSUE_CALLS = [
    ("GET", ""),
    ("POST", "/send"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/cancel"),
    ("POST", "/attachments"),
]


def test_what_a_caller_may_not_see_answers_exactly_like_what_does_not_exist(
    app, coordinator, editor
):
    """No existence oracle: another group's (or a newsletter's) ids answer as missing ids do.

    The coordinator of Ostrava probes ids of a newsletter issue, of Chomutov's
    issue and meeting, and Chomutov's list; each answer (status, body, headers)
    must equal the answer for an id that was never used, and nothing changes.
    """
    newsletter_issue = create_draft(editor)
    group_issue, group_meeting = _other_group_with_a_meeting(editor)
    missing = 2**31 - 1

    for hidden in (newsletter_issue, group_issue):
        for method, suffix in ISSUE_CALLS:
            seen = coordinator.call(method, f"/api/v1/issues/{hidden}{suffix}")
            unknown = coordinator.call(method, f"/api/v1/issues/{missing}{suffix}")
            assert seen.status_code == 404, (hidden, suffix)
            assert _answer(seen) == _answer(unknown), (hidden, suffix)
    for suffix in ("/update", "/cancel"):
        seen = coordinator.post(f"/api/v1/meetings/{group_meeting}{suffix}", future_meeting())
        unknown = coordinator.post(f"/api/v1/meetings/{missing}{suffix}", future_meeting())
        assert seen.status_code == 404, suffix
        assert _answer(seen) == _answer(unknown), suffix
    draft = {"subject": "Cizí", "body": BODY}
    for slug in ("zpravodaj", "chomutov-os"):
        seen = coordinator.post(f"/api/v1/lists/{slug}/issues", draft)
        unknown = coordinator.post("/api/v1/lists/neni/issues", draft)
        assert seen.status_code == 404, slug
        assert _answer(seen) == _answer(unknown), slug
    db.session.expire_all()
    assert {i.status for i in db.session.scalars(select(Issue))} == {"draft"}
    assert db.session.scalar(select(func.count(Issue.id))) == 2
    assert db.session.get(Issue, group_issue).meeting.cancelled_at is None


def test_editor_sees_every_list_and_only_missing_ids_are_404(app, editor):
    """Editors manage every list, groups included: a real id answers, a missing one is 404."""
    group_issue, group_meeting = _other_group_with_a_meeting(editor)
    assert editor.get(f"/api/v1/issues/{group_issue}").status_code == 200
    assert editor.get(f"/api/v1/issues/{2**31 - 1}").status_code == 404
    assert editor.post(f"/api/v1/meetings/{2**31 - 1}/cancel").status_code == 404
    assert editor.post(f"/api/v1/meetings/{group_meeting}/cancel").status_code == 202


def test_a_coordinator_of_two_groups_sees_both(app, accounts, client, editor):
    group_issue, _ = _other_group_with_a_meeting(editor)
    chomutov = db.session.scalar(select(MailingList).filter_by(slug="chomutov-os"))
    accounts.coordinator.lists.append(chomutov)
    db.session.commit()
    both = Api(client, create_token(accounts.coordinator))
    db.session.commit()
    assert both.get(f"/api/v1/issues/{group_issue}").status_code == 200


def test_unknown_list_is_404_even_for_a_coordinator(app, coordinator):
    response = coordinator.post("/api/v1/lists/neni/issues", {"subject": "A", "body": "B"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "Seznam neexistuje."
    assert response.get_json()["code"] == "not_found"


# --- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"body": BODY}, "subject"),
        ({"subject": "   ", "body": BODY}, "subject"),
        ({"subject": "Dva\nřádky", "body": BODY}, "subject"),
        ({"subject": "x" * 201, "body": BODY}, "subject"),
        ({"subject": 5, "body": BODY}, "subject"),
        ({"subject": None, "body": BODY}, "subject"),
        ({"subject": ["A"], "body": BODY}, "subject"),
        ({"subject": {"a": 1}, "body": BODY}, "subject"),
        ({"subject": "A"}, "body"),
        ({"subject": "A", "body": ["B"]}, "body"),
        ({"subject": "A", "body": 1e308}, "body"),
        ({"subject": "A", "body": "x" * 200_001}, "body"),
        ({"subject": "A", "body": BODY, "preheader": 3}, "preheader"),
        ({"subject": "A", "body": BODY, "preheader": "a\nb"}, "preheader"),
    ],
)
def test_invalid_issue_fields_are_422_per_field_in_czech(app, editor, payload, field):
    response = editor.post("/api/v1/lists/zpravodaj/issues", payload)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "Některé údaje nejsou v pořádku."
    assert field in body["errors"]
    assert body["code"] == "invalid"
    assert body["codes"][field] == f"invalid_{field}"
    assert db.session.scalar(select(Issue)) is None


def test_meeting_is_refused_on_a_newsletter(app, editor):
    response = editor.post(
        "/api/v1/lists/zpravodaj/issues",
        {"subject": "A", "body": BODY, "meeting": {"start": "2026-12-10T09:00"}},
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "meeting": "Pozvánku na setkání lze připojit jen k oznámení pracovní skupiny."
    }


def future_meeting(**extra) -> dict:
    start = (datetime.now(PRAGUE) + timedelta(days=20)).replace(
        hour=9, minute=30, second=0, microsecond=0, tzinfo=None
    )
    return {
        "start": start.isoformat(),
        "end": (start + timedelta(hours=2)).isoformat(),
        "location": "Magistrát, místnost 118",
        "agenda": "1. Zahájení",
        **extra,
    }


def test_meeting_on_a_group_creates_an_invitation(app, coordinator, outbox):
    import icalendar

    add_confirmed_subscribers("ostrava-psb", 2)
    meeting = future_meeting()
    issue_id = create_draft(coordinator, "ostrava-psb", subject="Setkání", meeting=meeting)
    shown = coordinator.get(f"/api/v1/issues/{issue_id}").get_json()
    assert shown["meeting_method"] == "REQUEST"
    assert shown["meeting"]["location"] == "Magistrát, místnost 118"
    start = datetime.fromisoformat(meeting["start"]).replace(tzinfo=PRAGUE)
    assert datetime.fromisoformat(shown["meeting"]["start"]) == start
    assert shown["meeting"]["sequence"] == 0 and shown["meeting"]["cancelled"] is False

    assert coordinator.post(f"/api/v1/issues/{issue_id}/send").status_code == 202
    run_jobs(app)
    assert len(outbox.mails) == 2
    part = next(
        p for p in outbox.mails[0].message.walk() if p.get_content_type() == "text/calendar"
    )
    event = icalendar.Calendar.from_ical(part.get_content()).walk("VEVENT")[0]
    assert event["UID"] == shown["meeting"]["uid"]
    assert event.decoded("DTSTART") == start


def test_meeting_whose_start_passes_while_checked_is_refused(app, coordinator, monkeypatch):
    """The meeting is checked, then read again for the new issue: when its start has
    passed in between, the API answers 422 (it used to fail with 500), and no issue is
    left without its meeting."""
    meeting = future_meeting()
    start = datetime.fromisoformat(meeting["start"]).replace(tzinfo=PRAGUE)
    start_utc = start.astimezone(UTC).replace(tzinfo=None)
    calls: list[datetime] = []

    def clock() -> datetime:
        # The first look is a minute before the start, every later one a minute after.
        now = start_utc + timedelta(minutes=1 if calls else -1)
        calls.append(now)
        return now

    monkeypatch.setattr("service.meetings.rules.utcnow", clock)
    response = coordinator.post(
        "/api/v1/lists/ostrava-psb/issues", {"subject": "Setkání", "body": BODY, "meeting": meeting}
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == {
        "meeting.start": "Začátek setkání musí být v budoucnosti."
    }
    assert len(calls) >= 2
    assert db.session.scalar(select(Issue)) is None


def test_meeting_update_and_cancel_through_the_api(app, coordinator, outbox):
    add_confirmed_subscribers("ostrava-psb", 1)
    issue_id = create_draft(coordinator, "ostrava-psb", meeting=future_meeting())
    meeting_id = coordinator.get(f"/api/v1/issues/{issue_id}").get_json()["meeting"]["id"]
    coordinator.post(f"/api/v1/issues/{issue_id}/send")
    moved = future_meeting(location="Radnice, sál 2")
    response = coordinator.post(f"/api/v1/meetings/{meeting_id}/update", moved)
    assert response.status_code == 201
    update = response.get_json()
    assert update["status"] == "draft"
    assert update["meeting"]["sequence"] == 1
    assert update["meeting"]["location"] == "Radnice, sál 2"
    bad = coordinator.post(f"/api/v1/meetings/{meeting_id}/update", {"start": "x"})
    assert bad.status_code == 422 and "start" in bad.get_json()["errors"]

    response = coordinator.post(f"/api/v1/meetings/{meeting_id}/cancel")
    assert response.status_code == 202
    assert response.get_json()["meeting_method"] == "CANCEL"
    assert response.get_json()["status"] == "sending"
    again = coordinator.post(f"/api/v1/meetings/{meeting_id}/cancel")
    assert again.status_code == 409
    assert again.get_json()["error"] == "Setkání už je zrušené."
    assert coordinator.post("/api/v1/meetings/999999/cancel").status_code == 404


def test_invalid_meeting_is_refused_per_field_in_czech(app, coordinator):
    response = coordinator.post(
        "/api/v1/lists/ostrava-psb/issues",
        {"subject": "Setkání", "body": BODY, "meeting": {"start": "2026-12-10T09:00"}},
    )
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) >= {"meeting.end", "meeting.location"}
    assert db.session.scalar(select(Issue)) is None


def test_attachment_upload_through_the_api(app, coordinator):
    import io

    issue_id = create_draft(coordinator, "ostrava-psb")
    response = coordinator.client.post(
        f"/api/v1/issues/{issue_id}/attachments",
        data={"file": (io.BytesIO(b"%PDF-1.4 zapis"), "zápis.pdf")},
        headers={"Authorization": f"Bearer {coordinator.token}"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["filename"] == "zápis.pdf"
    shown = coordinator.get(f"/api/v1/issues/{issue_id}").get_json()
    assert [a["filename"] for a in shown["attachments"]] == ["zápis.pdf"]
    refused = coordinator.client.post(
        f"/api/v1/issues/{issue_id}/attachments",
        data={"file": (io.BytesIO(b"MZ..."), "program.exe")},
        headers={"Authorization": f"Bearer {coordinator.token}"},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 422
    assert "PDF, DOCX, ODT a XLSX" in refused.get_json()["errors"]["file"]


@pytest.mark.parametrize(("who", "slug"), [("editor", "zpravodaj"), ("coordinator", "ostrava-psb")])
def test_null_meeting_and_unknown_fields_are_ignored(app, request, who, slug):
    from sqlalchemy import func

    from service.models import Meeting

    api = request.getfixturevalue(who)
    issue_id = create_draft(api, slug, meeting=None, extra="ignored")
    response = api.get(f"/api/v1/issues/{issue_id}")
    assert response.status_code == 200
    shown = response.get_json()
    assert (shown["meeting"], shown["meeting_method"]) == (None, None)
    assert "extra" not in shown and "ignored" not in response.get_data(as_text=True)

    db.session.expire_all()
    issue = db.session.get(Issue, issue_id)
    assert (issue.subject, issue.body, issue.preheader) == ("Zpravodaj 12/2026", BODY, "")
    assert (issue.meeting_id, issue.meeting_method) == (None, None)
    assert db.session.scalar(select(func.count()).select_from(Meeting)) == 0
    stored = [getattr(issue, column.key) for column in Issue.__mapper__.column_attrs]
    assert not [value for value in stored if isinstance(value, str) and "ignored" in value]


# --- unreadable requests, unknown routes and hostile input ---------------------


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("", "application/json", 400),
        ("{", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"text"', "application/json", 400),
        ("null", "application/json", 400),
        ("{'single': 'quotes'}", "application/json", 400),
        (b"\xff\xfe\x00garbage", "application/json", 400),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400),
        ("1" * 5000, "application/json", 400),
        ('{"subject": "A\\u0000B", "body": "x"}', "application/json", 400),
        ('{"subject": "\\ud800", "body": "x"}', "application/json", 400),
        ("subject=A&body=B", "application/x-www-form-urlencoded", 415),
        ('{"subject": "A", "body": "B"}', "text/plain", 415),
    ],
)
def test_unreadable_body_is_400_or_415_never_500(app, editor, data, content_type, status):
    response = editor.post("/api/v1/lists/zpravodaj/issues", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.get_json()["error"]


def test_body_over_the_size_limit_is_413_json(app, editor):
    payload = '{"subject": "A", "body": "' + "x" * (2 * 1024 * 1024) + '"}'
    response = editor.post(
        "/api/v1/lists/zpravodaj/issues", data=payload, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "Požadavek je příliš velký."


@pytest.mark.parametrize(
    "data",
    ["[]", "{", '{"at": {"$gt": ""}}', "[" * 50_000 + "]" * 50_000],
)
def test_hostile_send_bodies_never_500(app, editor, data):
    issue_id = create_draft(editor)
    response = editor.post(
        f"/api/v1/issues/{issue_id}/send", data=data, content_type="application/json"
    )
    assert response.status_code in (400, 422)
    db.session.expire_all()
    assert db.session.get(Issue, issue_id).status == "draft"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/issues/999999",
        "/api/v1/issues/2147483647",
        "/api/v1/issues/2147483648",
        "/api/v1/issues/99999999999999999999999999999999",
        "/api/v1/issues/-1",
        "/api/v1/issues/0",
        "/api/v1/issues/1.5",
        "/api/v1/issues/abc",
        "/api/v1/issues/%00",
        "/api/v1/nic",
        "/api/v1",
        "/api/v1/",
        "/api/v1/lists/",
    ],
)
def test_unknown_issues_and_routes_are_404_json(app, editor, path):
    response = editor.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]


@pytest.mark.parametrize(
    "slug", ["neni", "ZPRAVODAJ", "a" * 10_000, "%00", "%C5%BE%C3%A1k", "x'; DROP TABLE issue;--"]
)
def test_unknown_or_impossible_list_slug_is_404(app, editor, slug):
    response = editor.post(f"/api/v1/lists/{slug}/issues", {"subject": "A", "body": "B"})
    # A NUL in the path is refused by the input guard before any lookup (400).
    assert response.status_code == (400 if "%00" in slug else 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/issues/1/send", "POST"),
        ("DELETE", "/api/v1/lists", "GET"),
        ("PUT", "/api/v1/issues/1", "GET"),
        ("POST", "/api/v1/openapi.json", "GET"),
    ],
)
def test_wrong_method_is_405_json_with_allow(app, editor, method, path, allowed):
    response = editor.call(method, path)
    assert response.status_code == 405
    assert allowed in response.headers["Allow"]
    assert response.get_json()["error"] == "Tato adresa tento druh požadavku nepřijímá."


def test_unknown_api_path_with_unusable_query_is_still_api_json(app, editor):
    response = editor.get("/api/v1/nic?x=%00")
    assert response.status_code == 404


def test_post_needs_no_csrf_token(app, editor):
    # Flask-WTF's CSRF protection is on (as in production) and the request carries no token.
    assert app.config.get("WTF_CSRF_ENABLED", True)
    response = editor.post("/api/v1/lists/zpravodaj/issues", {"subject": "A", "body": BODY})
    assert response.status_code == 201


# --- rate limit ------------------------------------------------------------------


@pytest.mark.parametrize(
    "app_config", [{"RATE_LIMITS": True, "RATE_LIMIT_API": "3 per minute"}], indirect=True
)
def test_each_token_has_its_own_rate_limit(app, client, tokens):
    editor = Api(client, tokens["editor"])
    for _ in range(3):
        assert editor.get("/api/v1/lists").status_code == 200
    limited = editor.get("/api/v1/lists")
    assert limited.status_code == 429
    assert limited.get_json()["error"] == "Příliš mnoho pokusů. Zkuste to prosím znovu za chvíli."
    assert "Retry-After" in limited.headers
    # Another account's token is not affected.
    assert Api(client, tokens["admin"]).get("/api/v1/lists").status_code == 200
