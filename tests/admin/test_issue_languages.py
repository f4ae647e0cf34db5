"""The issue pages in English (list, editor, preview, the issue's page in each state, the
flashes and the domain's messages), with no Czech left over, and in Czech as before."""

from __future__ import annotations

import re

import pytest

from service.issues.sending import BODY_MAX
from tests.admin.test_issues import (
    BODY,
    fresh,
    make_issue,
    next_year_of,
    post,
    run_jobs,
    text_of,
)
from tests.admin.test_languages import ADMIN_DATA, english
from tests.conftest import add_confirmed_subscribers, log_in
from tests.i18n_checks import untranslated, visible_text

# The issue's own content is written in its list's language (Czech), not interface.
CONTENT = ("Co je nového", *(line for line in BODY.splitlines() if line.strip()))


@pytest.fixture
def editor(client, accounts):
    log_in(client, accounts.editor.email)
    return client


def in_english(response, *data: str) -> str:
    """A page answered to a request in English: its text, checked for Czech leftovers."""
    page = response.get_data(as_text=True)
    assert '<html lang="en">' in page
    assert untranslated(visible_text(page), *ADMIN_DATA, *CONTENT, *data) == []
    return " ".join(text_of(response.data).split())


# --- the list, the editor, the preview ------------------------------------------------


def test_issue_list_in_english(app, editor):
    make_issue()
    page = english(editor, "/admin/issues", *CONTENT)
    assert "<h1>Issues</h1>" in page and "New issue" in page
    assert "1 issue" in page and "times are Prague times" in page
    assert ">draft<" in page


def test_empty_issue_list_in_english(editor):
    page = english(editor, "/admin/issues")
    assert "There are no issues yet. Start with the “New issue” button." in page


def test_new_issue_editor_in_english(editor):
    page = english(editor, "/admin/issues/new?list=zpravodaj")
    assert "<h1>New issue</h1>" in page
    assert "Subject" in page and "Preheader" in page and "Text of the issue" in page
    assert "The text is written in <strong>Markdown</strong>" in page
    assert "Save the draft" in page and ">Preview</button>" in page
    assert "Preview of the mail" in page and "Phone (390 px)" in page
    assert 'data-preview-updating="Updating the preview…"' in page


def test_editor_refuses_in_english_with_the_domains_messages(editor):
    editor.get("/admin/issues?lang=en")  # the choice is remembered
    response = post(
        editor,
        "/admin/issues/new?list=zpravodaj",
        {"subject": "Řádek\njeden", "preheader": "", "body": "x" * (BODY_MAX + 1)},
    )
    assert response.status_code == 422
    words = in_english(response, "Řádek", "jeden")
    assert "The form has errors; please correct the marked fields." in words
    assert "The subject must be one line, without control characters." in words
    assert f"The text of the issue can have at most {BODY_MAX} characters." in words
    response = post(editor, "/admin/issues/new?list=zpravodaj", {"subject": "", "body": ""})
    words = in_english(response)
    assert "Please enter a subject." in words and "Please enter the text of the issue." in words


def test_group_editor_in_english(editor):
    page = english(editor, "/admin/issues/new?list=ostrava-psb")
    assert "Meeting invitation" in page and "Repeats" in page
    assert ">does not repeat<" in page and ">every two weeks<" in page


def test_edit_page_and_preview_page_in_english(editor):
    issue = make_issue()
    page = english(editor, f"/admin/issues/{issue.id}/edit", *CONTENT)
    assert "<h1>Edit issue</h1>" in page and "Save changes" in page
    assert "Back without saving" in page
    # The mail itself (its text version shown whole) is in the list's language.
    response = editor.get(f"/admin/issues/{issue.id}/preview")
    page = response.get_data(as_text=True)
    assert '<pre class="issue-preview-text" lang="cs">' in page
    interface = re.sub(r"(?s)<pre class=\"issue-preview-text\".*?</pre>", "", page)
    assert untranslated(visible_text(interface), *ADMIN_DATA, *CONTENT) == []
    assert "<h1>Preview of the issue</h1>" in page
    assert "HTML version" in page and "Text version" in page
    assert 'title="HTML version of the issue"' in page


# --- the issue's page in each state -----------------------------------------------------


def test_draft_in_english_and_its_actions(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    issue = make_issue()
    words = in_english(editor.get(f"/admin/issues/{issue.id}?lang=en"))
    assert "Send a test" in words and "Send now" in words and "Schedule" in words
    assert (
        "Yes, send the issue now to 3 confirmed subscribers of “Zpravodaj sociálního bydlení”."
        in words
    )
    assert "Preheader Co je nového" in words and "Duplicate" in words

    response = post(editor, f"/admin/issues/{issue.id}/test", {"addresses": "a@example.cz b@"})
    assert response.status_code == 422
    assert "Invalid e-mail address: b@" in in_english(response)
    response = post(
        editor, f"/admin/issues/{issue.id}/test", {"addresses": "a@example.cz, b@example.cz"},
        follow_redirects=True,
    )  # fmt: skip
    assert "The test mail is going to 2 addresses. a@example.cz, b@example.cz" in in_english(
        response
    )

    response = post(editor, f"/admin/issues/{issue.id}/send")
    assert response.status_code == 422
    assert "Tick the box to confirm the sending." in in_english(response)

    year = next_year_of(12, 10)
    response = post(
        editor, f"/admin/issues/{issue.id}/schedule", {"at": f"{year}-12-10T09:30"},
        follow_redirects=True,
    )  # fmt: skip
    words = in_english(response)
    assert f"The issue is scheduled for 10 Dec {year}, 09:30 (Prague time)." in words
    assert "Scheduled for" in words and "Change the time" in words
    assert "Unschedule (back to drafts)" in words


def test_sending_paused_and_cancelled_in_english(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 4)
    issue = make_issue()
    response = post(
        editor, f"/admin/issues/{issue.id}/send?lang=en", {"confirm": "1"}, follow_redirects=True
    )
    words = in_english(response)
    assert "The issue is being sent." in words
    assert "Sending progress" in words and "status: sending" in words
    assert "Waiting: 4" in words and "Recipients in all: 4" in words
    assert "Rate: 0 messages a minute · time left not known yet" in words
    assert "Pause" in words and "Yes, cancel the issue; whoever has not received it" in words

    state = editor.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert state["status_label"] == "sending"
    assert state["texts"] == {
        "percent": "0%",
        "rate": "0 messages a minute",
        "eta": "time left not known yet",
    }

    response = post(editor, f"/admin/issues/{issue.id}/pause", follow_redirects=True)
    words = in_english(response)
    assert "Sending is paused." in words and "status: paused" in words
    assert "Go on sending" in words

    response = post(editor, f"/admin/issues/{issue.id}/pause", follow_redirects=True)
    assert "Only an issue being sent can be paused." in in_english(response)

    response = post(
        editor, f"/admin/issues/{issue.id}/cancel", {"confirm": "1"}, follow_redirects=True
    )
    words = in_english(response)
    assert "The issue is cancelled; those who have received it keep it." in words
    assert "Final report" in words and "Cancelled: 4" in words
    assert "Send again to those it did not reach" in words
    assert fresh(issue.id).status == "cancelled"


def test_sent_issue_and_its_report_in_english(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    issue = make_issue()
    editor.get("/admin/issues?lang=en")  # a flash is said in the language of its request
    post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})
    run_jobs(app)
    words = in_english(editor.get(f"/admin/issues/{issue.id}?lang=en"))
    assert "Final report" in words and "Done 100%" in words and "status: sent" in words
    assert "Sent: 3" in words and "Sending started" in words and "Finished" in words
    assert "No permanent delivery errors." in words and "No bounced e-mails." in words
    assert "Send again" not in words

    response = post(editor, f"/admin/issues/{issue.id}/edit", follow_redirects=True)
    assert "Only a draft can be edited; an issue already sent can be duplicated." in in_english(
        response
    )
    response = post(editor, f"/admin/issues/{issue.id}/resend", follow_redirects=True)
    assert "Everyone it could be delivered to has received the issue." in in_english(response)
    listing = english(editor, "/admin/issues")
    assert ">sent<" in listing and "Sent / failed / waiting" in listing


# --- Czech as before --------------------------------------------------------------------


def test_issue_pages_stay_czech(app, editor, outbox):
    add_confirmed_subscribers("zpravodaj", 2)
    issue = make_issue()
    words = text_of(editor.get(f"/admin/issues/{issue.id}").data)
    assert "Poslat zkoušku" in words and "Odeslat hned" in words
    assert "Ano, odeslat vydání hned 2 potvrzeným odběratelům seznamu" in words
    page = editor.get("/admin/issues/new?list=zpravodaj").get_data(as_text=True)
    assert "Text se píše v&nbsp;jazyce <strong>Markdown</strong>" in page
    assert ">Náhled</button>" in page and "Telefon (390 px)" in page

    response = post(editor, f"/admin/issues/{issue.id}/send", {"confirm": "1"})
    words = text_of(editor.get(f"/admin/issues/{issue.id}").data)
    assert "Průběh odesílání" in words and "stav: odesílá se" in words
    assert "Rychlost: 0 zpráv za minutu · zbývající čas zatím nelze odhadnout" in words
    response = post(editor, f"/admin/issues/{issue.id}/pause", follow_redirects=True)
    assert "Odesílání je pozastaveno." in response.text
    assert "Pokračovat v odesílání" in response.text
    response = post(editor, f"/admin/issues/{issue.id}/resume", follow_redirects=True)
    assert "Odesílání pokračuje." in response.text
    run_jobs(app)
    words = text_of(editor.get(f"/admin/issues/{issue.id}").data)
    assert "Závěrečná zpráva" in words and "Hotovo 100 %" in words
    assert "stav: odesláno" in words and "Žádné trvalé chyby doručení." in words
