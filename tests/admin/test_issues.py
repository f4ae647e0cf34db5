"""The editors' issue pages: compose, preview, test, send, schedule, follow, report.

Real app, real database, real Redis, a real RQ worker (`run_jobs`) and the
aiosmtpd sink: what the editor clicks is what the subscribers receive.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import datetime, timedelta

import icalendar
import pytest
from sqlalchemy import func, select, update

from service import models
from service.admin.issues import format_eta, format_percent, format_rate
from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.models import Delivery, Issue, MailingList
from tests.conftest import add_confirmed_subscribers, csrf_token_of, log_in
from tests.conftest import run_jobs as run_all_jobs
from workers.delivery import fan_out

BODY = """Dobrý den,

v tomto vydání: **nové byty** v Ostravě a [metodika](https://socialnibydleni.example/metodika).

- první bod
- druhý bod
"""


@pytest.fixture
def editor(client, accounts):
    log_in(client, accounts.editor.email)
    return client


def token(client) -> str:
    return csrf_token_of(client, "/admin/issues")


def post(client, path: str, data: dict | None = None, **kwargs):
    """A form POST with the page's CSRF token, as the browser sends it."""
    return client.post(path, data={"csrf_token": token(client), **(data or {})}, **kwargs)


def run_jobs(app) -> None:
    """Run the queued jobs, then forget what this session had loaded.

    The test client's requests run inside the test's own app context and so
    share its session; the worker wrote through other sessions.
    """
    run_all_jobs(app)
    db.session.expire_all()


def make_issue(slug: str = "zpravodaj", subject: str = "Zpravodaj 12/2026") -> Issue:
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    fields, errors = sending.validate_fields(subject, BODY, "Co je nového")
    assert not errors
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    return issue


def fresh(issue_id: int) -> Issue:
    """The issue as the web requests left it (they committed in their own sessions)."""
    db.session.expire_all()
    return db.session.get(Issue, issue_id)


def text_of(page: bytes) -> str:
    """A page's visible text, tags dropped and whitespace collapsed (for phrase checks)."""
    without_tags = re.sub(r"<[^>]+>", " ", page.decode())
    return " ".join(html.unescape(without_tags).split())


def pre_text(page: bytes) -> str:
    match = re.search(r'<pre class="issue-preview-text">(.*?)</pre>', page.decode(), re.S)
    assert match, "no text version on the preview page"
    return html.unescape(match.group(1))


# --- formatting ----------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (None, ""),
        (43, "≈ 43 s zbývá"),
        (0, "≈ 1 s zbývá"),
        (60, "≈ 1 min zbývá"),
        (170, "≈ 3 min zbývá"),
        (59 * 60 + 50, "≈ 1 h zbývá"),
        (2 * 3600 + 120, "≈ 2 h 2 min zbývá"),
        # Beyond a day: days and hours, never "1 den 40 min" for 27 h 40 min.
        (27 * 3600 + 40 * 60, "≈ 1 den 4 h zbývá"),
        (47 * 3600, "≈ 1 den 23 h zbývá"),
        (48 * 3600, "≈ 2 dny zbývá"),
        (5 * 24 * 3600 + 3600, "≈ 5 dnů 1 h zbývá"),
    ],
)
def test_time_left_is_short_and_approximate_in_czech(app, seconds, expected):
    with app.test_request_context("/admin/issues/1"):
        assert format_eta(seconds) == expected


def test_time_left_in_english(app):
    with app.test_request_context("/admin/issues/1?lang=en"):
        assert format_eta(43) == "≈ 43 sec left"
        assert format_eta(170) == "≈ 3 min left"
        assert format_eta(2 * 3600 + 120) == "≈ 2 hr 2 min left"
        assert format_eta(27 * 3600 + 40 * 60) == "≈ 1 day 4 hr left"


def test_rate_and_percent_read_in_czech(app):
    with app.test_request_context("/admin/issues/1"):
        assert format_rate(1) == "1 zpráva za minutu"
        assert format_rate(3) == "3 zprávy za minutu"
        assert format_rate(120) == "120 zpráv za minutu"
        assert format_rate(2100) == "2\xa0100 zpráv za minutu"
        assert format_percent(37.5) == "37,5 %"
        assert format_percent(100.0) == "100 %"


def test_rate_and_percent_read_in_english(app):
    with app.test_request_context("/admin/issues/1?lang=en"):
        assert format_rate(1) == "1 message a minute"
        assert format_rate(2100) == "2,100 messages a minute"
        assert format_percent(37.5) == "37.5%"


# --- the rate over the last minute (a fake clock) -------------------------------

T0 = datetime(2026, 12, 10, 8, 0, 0)


def test_rate_is_measured_from_the_first_send_in_the_window_not_from_its_start():
    # 26 sent within the first 1.3 s of an issue: 25 gaps in 1.3 s, not 26 in a minute.
    assert sending.recent_rate(26, T0, T0 + timedelta(seconds=1.3)) == pytest.approx(25 / 1.3)
    # A steady 2 a second for the whole minute reads as 2 a second.
    steady = sending.recent_rate(120, T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=60))
    assert steady == pytest.approx(2, rel=0.02)
    # Nothing, or a single send, tells no rate; a burst counts over at least a second.
    assert sending.recent_rate(0, None, T0) == 0
    assert sending.recent_rate(1, T0, T0 + timedelta(seconds=5)) == 0
    assert sending.recent_rate(11, T0, T0 + timedelta(milliseconds=10)) == 10


def sent_at(issue_id: int, moments: list[datetime]) -> None:
    """The issue's first deliveries sent at these moments (the others stay pending)."""
    ids = db.session.scalars(
        select(Delivery.id).where(Delivery.issue_id == issue_id).order_by(Delivery.id)
    ).all()
    for delivery_id, moment in zip(ids, moments, strict=False):
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="sent", sent_at=moment, attempts=1)
        )
    db.session.commit()


def sending_issue(editor, recipients: int) -> Issue:
    """An issue sending to `recipients` since T0, its deliveries made and none sent yet."""
    add_confirmed_subscribers("zpravodaj", recipients)
    issue = make_issue()
    post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})
    fan_out(issue.id)
    # Started at T0 whatever today's date: the rate counts no sends from before the start.
    db.session.execute(
        update(Issue).where(Issue.id == issue.id).values(started_at=T0, sending_resumed_at=T0)
    )
    db.session.commit()
    return fresh(issue.id)


def test_progress_at_the_start_of_a_fast_issue_says_seconds_not_an_hour(app, editor, monkeypatch):
    """The case reported: 26 sent in the first seconds of an issue that took 43 s in all
    read "26 zpráv za minutu zbývá asi 57 minut" (26 over the whole minute)."""
    issue = sending_issue(editor, 60)
    sent_at(issue.id, [T0 + timedelta(seconds=0.05 * n) for n in range(26)])
    monkeypatch.setattr(sending, "utcnow", lambda: T0 + timedelta(seconds=1.5))
    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert state["counts"]["sent"] == 26 and state["counts"]["pending"] == 34
    # 25 more in the 1.5 s since the first: 1,000 a minute; 34 left take about 2 s.
    assert state["rate_per_minute"] == 1000 and state["eta_seconds"] == 2
    assert state["texts"]["rate"] == "1\xa0000 zpráv za minutu"
    assert state["texts"]["eta"] == "≈ 2 s zbývá"


def test_progress_counts_only_the_last_minute(app, editor, monkeypatch):
    """Sends older than the window do not count: a fast start followed by a slow minute
    reads as the slow minute."""
    issue = sending_issue(editor, 40)
    fast = [T0 + timedelta(seconds=0.1 * n) for n in range(20)]  # in the first 2 s
    slow = [T0 + timedelta(seconds=70 + 10 * n) for n in range(6)]  # 1 per 10 s after
    sent_at(issue.id, fast + slow)
    monkeypatch.setattr(sending, "utcnow", lambda: T0 + timedelta(seconds=125))
    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    # In the last minute (65–125 s): the six slow ones, 5 gaps in 55 s; 14 left.
    assert state["rate_per_minute"] == round(5 / 55 * 60)
    assert state["eta_seconds"] == round(14 / (5 / 55))
    assert state["texts"]["eta"] == "≈ 3 min zbývá"


def test_progress_with_no_recent_sends_says_the_time_left_is_not_known(app, editor, monkeypatch):
    issue = sending_issue(editor, 5)
    sent_at(issue.id, [T0, T0 + timedelta(seconds=1)])
    monkeypatch.setattr(sending, "utcnow", lambda: T0 + timedelta(minutes=5))
    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert state["rate_per_minute"] == 0 and state["eta_seconds"] is None
    assert state["texts"]["eta"] == "zbývající čas zatím nelze odhadnout"


def test_progress_after_a_resume_counts_only_the_sends_since(app, editor, monkeypatch):
    """The case reported: 100 sent in 10 s, paused for 40 s, then 20 sent in the 2 s since
    the resume read 2.3 a second, the sends before the pause and the pause itself counted
    in the minute; since the resume it is 10 a second."""
    clock = [T0]
    monkeypatch.setattr(sending, "utcnow", lambda: clock[0])
    monkeypatch.setattr(models, "utcnow", lambda: clock[0])
    issue = sending_issue(editor, 150)
    clock[0] = T0 + timedelta(seconds=10)
    assert post(editor, f"/admin/issues/{issue.id}/pause").status_code == 302
    clock[0] = T0 + timedelta(seconds=50)
    assert post(editor, f"/admin/issues/{issue.id}/resume").status_code == 302
    before = [T0 + timedelta(seconds=0.1 * n) for n in range(100)]
    since = [clock[0] + timedelta(seconds=0.1 * n) for n in range(1, 21)]
    sent_at(issue.id, before + since)
    clock[0] = T0 + timedelta(seconds=52)
    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    # 19 gaps in the 1.9 s from the first send after the resume: 600 a minute, 30 left.
    assert state["counts"]["sent"] == 120 and state["counts"]["pending"] == 30
    assert state["rate_per_minute"] == 600 and state["eta_seconds"] == 3


# --- access ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/issues",
        "/admin/issues/new?list=zpravodaj",
        "/admin/issues/1",
        "/admin/issues/1/edit",
        "/admin/issues/1/preview",
        "/admin/issues/1/preview.html",
        "/admin/issues/1/progress.json",
    ],
)
def test_issue_pages_require_sign_in(client, app, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_post_without_csrf_token_is_refused(editor):
    issue = make_issue()
    response = editor.post(f"/admin/issues/{issue.id}/send", data={"confirm": "1"})
    assert response.status_code == 400
    response = editor.post(
        "/admin/issues/new?list=zpravodaj", data={"subject": "Bez tokenu", "body": "Text"}
    )
    assert response.status_code == 400
    assert fresh(issue.id).status == "draft"
    assert db.session.scalar(select(Issue).filter_by(subject="Bez tokenu")) is None


def test_coordinator_cannot_open_or_act_on_a_newsletter_issue(client, accounts):
    issue = make_issue("zpravodaj")
    group_issue = make_issue("ostrava-psb", subject="Pozvánka na setkání skupiny")
    log_in(client, accounts.coordinator.email)
    for path in ("", "/edit", "/preview", "/preview.html", "/progress.json"):
        assert client.get(f"/admin/issues/{issue.id}{path}").status_code == 403, path
    assert post(client, f"/admin/issues/{issue.id}/send", {"confirm": "1"}).status_code == 403
    assert client.get("/admin/issues/new?list=zpravodaj").status_code == 403
    assert fresh(issue.id).status == "draft"

    listing = client.get("/admin/issues")
    assert listing.status_code == 200
    assert "Pozvánka na setkání skupiny" in listing.text
    assert "Zpravodaj 12/2026" not in listing.text
    assert client.get(f"/admin/issues/{group_issue.id}").status_code == 200


def test_unknown_issue_and_unknown_action_are_404(editor):
    assert editor.get("/admin/issues/999999").status_code == 404
    assert editor.get("/admin/issues/999999/progress.json").status_code == 404
    assert post(editor, "/admin/issues/999999/pause").status_code == 404
    issue = make_issue()
    assert post(editor, f"/admin/issues/{issue.id}/explode").status_code == 404
    assert editor.get("/admin/issues/new?list=neexistuje").status_code == 404


# --- compose --------------------------------------------------------------------


def test_validation_errors_are_shown_in_czech_with_422(editor):
    response = post(
        editor,
        "/admin/issues/new?list=zpravodaj",
        {"subject": "  ", "preheader": "řádek\nsecond", "body": ""},
    )
    assert response.status_code == 422
    page = response.text
    assert "Vyplňte předmět." in page
    assert "Vyplňte text vydání." in page
    assert "Perex musí být na jednom řádku a bez řídicích znaků." in page
    assert 'id="subject-error"' in page and 'aria-invalid="true"' in page
    assert db.session.scalars(select(Issue)).all() == []

    issue = make_issue()
    response = post(
        editor, f"/admin/issues/{issue.id}/edit", {"subject": "x" * 201, "body": "Text"}
    )
    assert response.status_code == 422
    assert "Předmět může mít nejvýše 200 znaků." in response.text
    assert fresh(issue.id).subject == "Zpravodaj 12/2026"


def test_issues_page_offers_a_new_issue_for_each_visible_list(editor):
    page = editor.get("/admin/issues").text
    assert "Nové vydání" in page
    for slug in ("zpravodaj", "novinky", "ostrava-psb"):
        assert f'value="{slug}"' in page
    assert editor.get("/admin/issues/new").status_code == 302  # no list chosen


def test_sent_issue_is_not_editable(editor, outbox, app):
    add_confirmed_subscribers("zpravodaj", 1)
    issue = make_issue()
    sending.send_now(issue)
    db.session.commit()
    response = editor.get(f"/admin/issues/{issue.id}/edit", follow_redirects=True)
    assert "Upravit lze jen koncept" in response.text
    response = post(editor, f"/admin/issues/{issue.id}/edit", {"subject": "Nový", "body": "X"})
    assert response.status_code == 302
    assert fresh(issue.id).subject == "Zpravodaj 12/2026"


# --- the whole flow ---------------------------------------------------------------


def test_compose_preview_test_send_and_report(app, editor, outbox):
    ids = add_confirmed_subscribers("zpravodaj", 12)
    add_confirmed_subscribers("novinky", 3, start=100)

    # Compose.
    response = post(
        editor,
        "/admin/issues/new?list=zpravodaj",
        {"subject": "Zpravodaj 1/2027", "preheader": "Novinky z obcí", "body": "Koncept"},
    )
    assert response.status_code == 302
    issue = db.session.scalar(select(Issue).filter_by(subject="Zpravodaj 1/2027"))
    assert response.headers["Location"] == f"/admin/issues/{issue.id}"
    assert issue.status == "draft" and issue.mailing_list.slug == "zpravodaj"
    assert issue.created_by.email == "redakce@socialnibydleni.example"

    # Edit.
    edit_page = editor.get(f"/admin/issues/{issue.id}/edit")
    assert edit_page.status_code == 200 and "Markdown" in edit_page.text
    response = post(
        editor,
        f"/admin/issues/{issue.id}/edit",
        {"subject": "Zpravodaj 1/2027", "preheader": "Novinky z obcí", "body": BODY},
    )
    assert response.status_code == 302
    assert fresh(issue.id).body == BODY

    # Preview: subject, framed HTML and the text version.
    preview = editor.get(f"/admin/issues/{issue.id}/preview")
    assert preview.status_code == 200
    assert "Zpravodaj 1/2027" in preview.text
    assert f'src="/admin/issues/{issue.id}/preview.html"' in preview.text
    assert "sandbox=" in preview.text
    preview_text = pre_text(preview.data)
    assert "nové byty" in preview_text
    framed = editor.get(f"/admin/issues/{issue.id}/preview.html")
    assert framed.status_code == 200 and framed.mimetype == "text/html"
    assert "<strong>nové byty</strong>" in framed.text

    # Test send: only to the given address, with [TEST] in the subject.
    response = post(
        editor, f"/admin/issues/{issue.id}/test", {"addresses": "jana.novakova@seznam.cz"}
    )
    assert response.status_code == 302
    run_jobs(app)
    assert [m.rcpt_tos for m in outbox.mails] == [["jana.novakova@seznam.cz"]]
    test_mail = outbox.mails[0].message
    assert test_mail["Subject"] == "[TEST] Zpravodaj 1/2027"
    # The preview shows exactly the text that is mailed.
    assert test_mail.get_body(("plain",)).get_content() == preview_text
    assert fresh(issue.id).status == "draft"
    outbox.catcher.clear()

    # Send now (the confirmation box ticked), then the workers deliver.
    page = editor.get(f"/admin/issues/{issue.id}")
    assert "Odeslat hned" in page.text and "12 potvrzeným odběratelům" in page.text
    response = post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})
    assert response.status_code == 302
    assert fresh(issue.id).status == "sending"
    sending_page = editor.get(f"/admin/issues/{issue.id}")
    assert "<progress" in sending_page.text
    assert f'data-progress-url="/admin/issues/{issue.id}/progress.json"' in sending_page.text
    assert "admin-issues.js" in sending_page.text
    run_jobs(app)

    recipients = sorted(r for m in outbox.mails for r in m.rcpt_tos)
    assert recipients == sorted(f"odberatel{n}@example.cz" for n in range(len(ids)))
    assert {m.message["Subject"] for m in outbox.mails} == {"Zpravodaj 1/2027"}
    sent_text = outbox.mails[0].message.get_body(("plain",)).get_content()
    assert "nové byty" in sent_text

    # The final report.
    assert fresh(issue.id).status == "sent"
    report = editor.get(f"/admin/issues/{issue.id}")
    words = text_of(report.data)
    assert "Závěrečná zpráva" in words
    assert "Hotovo 100 %" in words
    assert "stav: odesláno" in words
    assert "Odesláno: 12" in words and "Nedoručeno: 0" in words and "Čeká: 0" in words
    assert "Celkem adresátů: 12" in words
    assert "data-progress-url" not in report.text  # nothing left to poll
    assert "Odeslat znovu těm, kterým se nedoručilo" not in words
    assert "Odeslat hned" not in words

    listing = text_of(editor.get("/admin/issues").data)
    assert "Zpravodaj 1/2027" in listing and "odesláno" in listing
    assert "12 / 0 / 0" in listing


def test_progress_json_reports_counts_rate_and_czech_texts(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 5)
    issue = make_issue()
    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert state["status"] == "draft" and state["status_label"] == "koncept"

    post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})
    response = editor.get(f"/admin/issues/{issue.id}/progress.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    state = response.get_json()
    assert state["status"] == "sending" and state["status_label"] == "odesílá se"
    assert state["counts"]["total"] == 5 and state["counts"]["pending"] == 5
    assert state["percent"] == 0
    assert {"rate_per_minute", "eta_seconds", "started_at", "finished_at"} <= state.keys()
    assert state["texts"] == {
        "percent": "0 %",
        "rate": "0 zpráv za minutu",
        "eta": "zbývající čas zatím nelze odhadnout",
    }

    run_jobs(app)
    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert state["status"] == "sent" and state["status_label"] == "odesláno"
    assert state["percent"] == 100
    assert state["texts"]["percent"] == "100 %"
    assert state["counts"] == {
        "total": 5, "sent": 5, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    assert state["finished_at"].endswith("+00:00")


def test_progress_midway_shows_rate_and_time_left_in_czech(app, editor, outbox, monkeypatch):
    app.config["BATCH_SIZE"] = 3
    issue = sending_issue(editor, 9)
    sent_at(issue.id, [T0, T0 + timedelta(seconds=20), T0 + timedelta(seconds=40)])
    monkeypatch.setattr(sending, "utcnow", lambda: T0 + timedelta(seconds=45))

    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert state["counts"]["sent"] == 3 and state["counts"]["pending"] == 6
    assert state["percent"] == 33.3
    # Three sent in the last 45 s (two gaps): six left take about two minutes and a quarter.
    assert state["texts"] == {
        "percent": "33,3 %",
        "rate": "3 zprávy za minutu",
        "eta": "≈ 2 min zbývá",
    }
    page = text_of(editor.get(f"/admin/issues/{issue.id}").data)
    assert "Průběh odesílání" in page and "Hotovo 33,3 %" in page
    assert "Rychlost: 3 zprávy za minutu · ≈ 2 min zbývá" in page
    assert "Pozastavit" in page and "Odeslat hned" not in page


# --- test sends -------------------------------------------------------------------


def test_test_send_with_a_bad_address_is_refused_in_czech(app, editor, outbox):
    issue = make_issue()
    response = post(
        editor, f"/admin/issues/{issue.id}/test", {"addresses": "jana@seznam.cz, petr@@x"}
    )
    assert response.status_code == 422
    assert "Neplatný e-mail: petr@@x" in response.text
    assert 'value="jana@seznam.cz, petr@@x"' in response.text  # kept for correcting
    response = post(editor, f"/admin/issues/{issue.id}/test", {"addresses": ""})
    assert response.status_code == 422
    assert "Zadejte alespoň jednu adresu." in response.text
    run_jobs(app)
    assert outbox.mails == []


# --- send now and cancel need a ticked box ----------------------------------------


def test_send_now_and_cancel_need_the_confirmation_box(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 2)
    issue = make_issue()
    response = post(editor, f"/admin/issues/{issue.id}/send")
    assert response.status_code == 422
    assert "Potvrďte odeslání zaškrtnutím políčka." in response.text
    response = post(editor, f"/admin/issues/{issue.id}/cancel")
    assert response.status_code == 422
    assert "Potvrďte zrušení zaškrtnutím políčka." in response.text
    run_jobs(app)
    assert fresh(issue.id).status == "draft"
    assert outbox.mails == []


# --- pause, resume, cancel, resend -------------------------------------------------


def test_pause_resume_and_cancel_through_the_buttons(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 4)
    issue = make_issue()
    post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})

    response = post(editor, f"/admin/issues/{issue.id}/pause", follow_redirects=True)
    assert "Odesílání je pozastaveno." in response.text
    assert fresh(issue.id).status == "paused"
    assert "Pokračovat v odesílání" in response.text
    run_jobs(app)
    assert outbox.mails == []

    response = post(editor, f"/admin/issues/{issue.id}/resume", follow_redirects=True)
    assert "Odesílání pokračuje." in response.text
    assert fresh(issue.id).status == "sending"
    assert "Pozastavit" in response.text

    response = post(editor, f"/admin/issues/{issue.id}/cancel", {"confirm": "1"})
    assert response.status_code == 302
    assert fresh(issue.id).status == "cancelled"
    run_jobs(app)
    assert outbox.mails == []

    # Cancelled before anyone got it: the report offers to send to the unreached.
    report = text_of(editor.get(f"/admin/issues/{issue.id}").data)
    assert "Zrušeno: 4" in report
    assert "Odeslat znovu těm, kterým se nedoručilo" in report


def test_a_refused_transition_is_explained_in_czech(editor):
    issue = make_issue()
    response = post(editor, f"/admin/issues/{issue.id}/pause", follow_redirects=True)
    assert response.status_code == 200
    assert "Pozastavit lze jen vydání, které se odesílá." in response.text
    response = editor.post(
        f"/admin/issues/{issue.id}/resume",
        data={"csrf_token": token(editor)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 409
    assert response.get_json()["error"] == "Pokračovat lze jen v pozastaveném vydání."
    assert fresh(issue.id).status == "draft"


def test_send_again_reaches_only_those_not_reached(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 5)
    # A policy refusal (fixed by the time of "send again"); a 5.1.1 would suppress the address.
    outbox.catcher.reject_rcpt["odberatel2@example.cz"] = (554, "5.7.1 Message refused")
    issue = make_issue()
    post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})
    run_jobs(app)
    assert len(outbox.mails) == 4

    report = editor.get(f"/admin/issues/{issue.id}")
    words = text_of(report.data)
    assert "Nedoručeno: 1" in words
    assert "odberatel2@example.cz" in words and "554" in words
    assert "Odeslat znovu těm, kterým se nedoručilo" in words

    outbox.catcher.clear()
    outbox.catcher.reject_rcpt.clear()
    response = post(editor, f"/admin/issues/{issue.id}/resend", follow_redirects=True)
    assert "Vydání znovu odchází 1 adresátovi, kterému se nedoručilo." in response.text
    run_jobs(app)
    assert [m.rcpt_tos for m in outbox.mails] == [["odberatel2@example.cz"]]
    assert fresh(issue.id).status == "sent"
    statuses = db.session.scalars(select(Delivery.status).filter_by(issue_id=issue.id)).all()
    assert statuses == ["sent"] * 5


def test_duplicate_opens_a_new_draft_with_the_same_content(editor):
    issue = make_issue()
    response = post(editor, f"/admin/issues/{issue.id}/duplicate")
    assert response.status_code == 302
    copy = db.session.scalar(select(Issue).where(Issue.id != issue.id))
    assert response.headers["Location"] == f"/admin/issues/{copy.id}/edit"
    assert (copy.subject, copy.body, copy.status) == (issue.subject, issue.body, "draft")


# --- schedule ----------------------------------------------------------------------


def next_year_of(month: int, day: int) -> int:
    """The year of the next (month, day) at least a day away: within the schedule horizon."""
    today = utcnow()
    return today.year if (month, day) > (today.month, today.day + 1) else today.year + 1


def test_schedule_takes_prague_time_and_stores_utc(app, editor):
    year = next_year_of(12, 10)
    issue = make_issue()
    response = post(
        editor, f"/admin/issues/{issue.id}/schedule", {"at": f"{year}-12-10T09:30"},
        follow_redirects=True,
    )  # fmt: skip
    assert f"Vydání je naplánováno na 10. 12. {year} v 09:30" in response.text
    scheduled = fresh(issue.id)
    assert scheduled.status == "scheduled"
    assert scheduled.scheduled_at == datetime(year, 12, 10, 8, 30)  # winter: UTC+1
    assert f'value="{year}-12-10T09:30"' in response.text  # shown back in Prague time

    # Summer: UTC+2.
    summer = next_year_of(7, 1)
    post(editor, f"/admin/issues/{issue.id}/schedule", {"at": f"{summer}-07-01T09:30"})
    assert fresh(issue.id).scheduled_at == datetime(summer, 7, 1, 7, 30)

    response = post(editor, f"/admin/issues/{issue.id}/unschedule")
    assert response.status_code == 302
    unscheduled = fresh(issue.id)
    assert (unscheduled.status, unscheduled.scheduled_at) == ("draft", None)


def test_schedule_in_the_past_or_garbled_is_refused_in_czech(editor):
    issue = make_issue()
    past = (utcnow() - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    response = post(editor, f"/admin/issues/{issue.id}/schedule", {"at": past})
    assert response.status_code == 422
    assert "Čas odeslání musí být v budoucnosti." in response.text
    assert 'id="at-error"' in response.text

    for garbled in ("", "zítra", "2026-13-40T25:00", "2027-12-10T09:30+05:00", "0001-01-01T00:30"):
        response = post(editor, f"/admin/issues/{issue.id}/schedule", {"at": garbled})
        assert response.status_code == 422, garbled
    response = post(editor, f"/admin/issues/{issue.id}/schedule", {"at": "9999-12-31T23:59"})
    assert "nejvýše rok dopředu" in response.text
    # 02:30 on the last Sunday of March does not exist in Prague.
    response = post(editor, f"/admin/issues/{issue.id}/schedule", {"at": "2027-03-28T02:30"})
    assert response.status_code == 422
    assert "neexistuje" in response.text
    assert fresh(issue.id).status == "draft"


def test_editing_a_scheduled_issue_returns_it_to_draft(editor):
    issue = make_issue()
    year = next_year_of(12, 10)
    post(editor, f"/admin/issues/{issue.id}/schedule", {"at": f"{year}-12-10T09:30"})
    assert fresh(issue.id).status == "scheduled"
    response = post(
        editor, f"/admin/issues/{issue.id}/edit", {"subject": "Opraveno", "body": BODY},
        follow_redirects=True,
    )  # fmt: skip
    assert "Naplánované odeslání bylo zrušeno" in response.text
    edited = fresh(issue.id)
    assert (edited.subject, edited.status, edited.scheduled_at) == ("Opraveno", "draft", None)


# --- preview headers ---------------------------------------------------------------


PREVIEW_CSP = (
    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)


def test_live_preview_of_a_new_draft_shows_the_typed_mail_with_its_footer(editor):
    response = post(
        editor,
        "/admin/issues/new/preview?list=zpravodaj",
        {"subject": "Zpravodaj 1/2027", "preheader": "", "body": "Ahoj **všem** čtenářům"},
    )
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == PREVIEW_CSP
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Cache-Control"] == "no-store"
    mail = response.get_data(as_text=True)
    assert "<strong>všem</strong>" in mail
    # The footer as recipients get it: why they get it and the (sample) personal links.
    assert "Odhlásit se z odběru" in mail and "/unsubscribe/ukazka" in mail
    assert "k odběru „Zpravodaj sociálního bydlení“" in mail
    assert db.session.scalar(select(func.count()).select_from(Issue)) == 0  # nothing saved


def test_live_preview_of_an_edit_shows_the_typed_text_not_the_stored(editor):
    issue = make_issue()
    response = post(
        editor,
        f"/admin/issues/{issue.id}/edit/preview",
        {"subject": "Opravený předmět", "preheader": "", "body": "Úplně nový text"},
    )
    assert response.status_code == 200
    mail = response.get_data(as_text=True)
    assert "Úplně nový text" in mail and "nové byty" not in mail
    assert fresh(issue.id).body == BODY  # nothing saved


def test_live_preview_shows_what_it_can_of_an_unfinished_form(editor):
    """A field still wrong (a line break in the subject, nothing typed yet) does not stop the
    preview, and nothing of it reaches a header."""
    for fields in (
        {"subject": "Dva\nřádky\x0bWordu", "body": "Text"},
        {"subject": "", "body": ""},
        {},
    ):
        response = post(editor, "/admin/issues/new/preview?list=zpravodaj", fields)
        assert response.status_code == 200, fields
        assert "Odhlásit se z odběru" in response.get_data(as_text=True)


def test_live_preview_of_a_group_invitation_shows_the_typed_meeting(client, accounts):
    log_in(client, accounts.coordinator.email)
    year = next_year_of(12, 10)
    response = post(
        client,
        "/admin/issues/new/preview?list=ostrava-psb",
        {
            "subject": "Setkání skupiny",
            "body": "Zveme vás.",
            "meeting_start": f"{year}-12-10T17:00",
            "meeting_end": f"{year}-12-10T19:00",
            "meeting_location": "Komunitní centrum Hrabůvka",
        },
    )
    assert response.status_code == 200
    mail = response.get_data(as_text=True)
    assert "Komunitní centrum Hrabůvka" in mail and "Zveme vás." in mail
    # The answer links are sample ones, as the saved draft's preview has them.
    assert "@@" not in mail
    assert "/rsvp/ukazka?odpoved=prijdu" in mail
    assert db.session.scalar(select(func.count()).select_from(Issue)) == 0


def test_no_placeholder_reaches_any_preview_of_a_meeting_mail(client, accounts, monkeypatch):
    """Before: the live previews of an invitation, of its edit and of an announcement about
    a meeting already sent showed "@@ZPRAVODAJ-RSVP-URL@@?odpoved=prijdu" for the answer
    links, and the unsaved meeting's calendar took its title from whatever issue had no
    meeting (here an unrelated newsletter)."""
    from service.meetings import rules as meetings
    from tests.meetings.test_meetings import make_invitation, meeting_input, send

    make_issue(subject="Cizí zpravodaj bez setkání")
    year = next_year_of(12, 10)
    invitation = make_invitation(datetime(year, 12, 10, 17, 0), "Pozvánka: setkání v prosinci")
    sent = make_invitation(datetime(year, 12, 11, 17, 0), "Jiné setkání")
    send(sent)
    update = meetings.update_meeting(sent.meeting, meeting_input(datetime(year, 12, 12, 9)), None)
    db.session.commit()
    typed = {
        "subject": "Pozvánka: setkání skupiny",
        "body": "Zveme vás.",
        "meeting_start": f"{year}-12-10T17:00",
        "meeting_end": f"{year}-12-10T19:00",
        "meeting_location": "Komunitní centrum Hrabůvka",
    }
    built: list[sending.Preview] = []

    def recorded(issue: Issue) -> sending.Preview:
        built.append(preview(issue))
        return built[-1]

    preview = sending.preview
    monkeypatch.setattr(sending, "preview", recorded)
    log_in(client, accounts.coordinator.email)
    pages = [
        post(client, "/admin/issues/new/preview?list=ostrava-psb", typed),
        post(client, f"/admin/issues/{invitation.id}/edit/preview", typed),
        post(client, f"/admin/issues/{update.id}/edit/preview", {"subject": "Změna", "body": "x"}),
        client.get(f"/admin/issues/{invitation.id}/preview"),
        client.get(f"/admin/issues/{update.id}/preview.html"),
    ]
    for page in pages:
        assert page.status_code == 200
        shown = page.get_data(as_text=True)
        assert "@@" not in shown and "/rsvp/ukazka?odpoved=prijdu" in shown
    assert len(built) == len(pages)
    for mail in built:
        assert "@@" not in mail.text and "@@" not in mail.html and b"@@" not in mail.raw
    # The typed subject names the meeting in the live previews' calendars.
    summaries = [summary_of(mail.raw) for mail in built]
    assert summaries[:2] == ["Setkání skupiny", "Setkání skupiny"]
    assert "Cizí zpravodaj bez setkání" not in summaries


def summary_of(raw: bytes) -> str:
    """The SUMMARY of the calendar a mail carries."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    return str(icalendar.Calendar.from_ical(part.get_content()).walk("VEVENT")[0]["SUMMARY"])


def test_live_preview_keeps_to_the_lists_an_account_may_manage(client, accounts):
    issue = make_issue()
    log_in(client, accounts.coordinator.email)
    fields = {"subject": "x", "body": "y"}
    assert post(client, "/admin/issues/new/preview?list=zpravodaj", fields).status_code == 403
    assert post(client, f"/admin/issues/{issue.id}/edit/preview", fields).status_code == 403
    assert post(client, "/admin/issues/new/preview?list=nic", fields).status_code == 404
    # Without the form's CSRF token: refused.
    response = client.post("/admin/issues/new/preview?list=ostrava-psb", data=fields)
    assert response.status_code == 400


def test_framed_preview_has_its_own_strict_policy(editor):
    issue = make_issue()
    response = editor.get(f"/admin/issues/{issue.id}/preview.html")
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'self'"
    )
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    page = editor.get(f"/admin/issues/{issue.id}/preview")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_progress_rate_comes_from_the_last_sends_whatever_the_issue_size(app, editor, monkeypatch):
    """The recent rate reads at most RATE_SAMPLE of the issue's last sends: below the
    sample it is those sent in the window, at the sample it is the sample over its span."""
    issue = sending_issue(editor, 12)
    sent_at(issue.id, [T0 + timedelta(seconds=n) for n in range(10)])  # one a second
    monkeypatch.setattr(sending, "utcnow", lambda: T0 + timedelta(seconds=10))
    # Nine more in the ten seconds since the first: 54 a minute.
    assert sending.progress(fresh(issue.id))["rate_per_minute"] == 54
    monkeypatch.setattr(sending, "RATE_SAMPLE", 4)
    # The newest four (6–9 s): three more in the four seconds since, 45 a minute.
    assert sending.progress(fresh(issue.id))["rate_per_minute"] == 45
