"""A group whose name says it is a group ("Pracovní skupina sociálního bydlení") is never
introduced as a group again: not "ve skupině Pracovní skupina …", not "do pracovní
skupiny Pracovní skupina …" (issue 16, "Wording"), in Czech or in English."""

from __future__ import annotations

import re

from tests.conftest import link_to, run_jobs
from tests.groups.test_joining import (  # noqa: F401  (fixtures)
    ask_to_join,
    invitation_path,
    invited,
    public_group,
)

NAME = "Pracovní skupina sociálního bydlení"
GENITIVE = "Pracovní skupiny sociálního bydlení"
# "skupině <strong>Pracovní skupina", "group Pracovní skupina", "koordinátor skupiny Pracovní…"
SAID_TWICE = re.compile(r"(?i)(skupin\w*|group)\s+(<strong>)?\s*(pracovní skupin|working group)")


def readable(html: str) -> str:
    return " ".join(html.split())


def test_the_join_pages_and_the_coordinators_notice_name_the_group_once(
    client,
    app,
    outbox,
    accounts,
    public_group,  # noqa: F811
):
    requested = readable(ask_to_join(client).get_data(as_text=True))
    assert f"žádosti o přijetí do <strong>{GENITIVE}</strong>" in requested
    run_jobs(app)
    path = link_to(outbox.mails[0], "/groups/join/")
    confirm = readable(client.get(path).get_data(as_text=True))
    assert f"žádá o přijetí do <strong>{GENITIVE}</strong>" in confirm
    confirmed = readable(client.post(path).get_data(as_text=True))
    assert f"Žádost o přijetí do <strong>{GENITIVE}</strong> jsme předali" in confirmed
    again = readable(client.get(path).get_data(as_text=True))
    assert f"Vaše žádost o přijetí do <strong>{GENITIVE}</strong> je potvrzená" in again
    english = readable(client.get(path + "?lang=en").get_data(as_text=True))
    assert f"Your request to join <strong>{NAME}</strong> is confirmed" in english
    for page in (requested, confirm, confirmed, again, english):
        assert SAID_TWICE.search(page) is None, SAID_TWICE.search(page)

    run_jobs(app)
    notice = outbox.mails[-1]
    assert notice.rcpt_tos == ["koordinator@ostrava.example"]
    text = readable(notice.message.get_body(("plain",)).get_content())
    assert f"o přijetí do {GENITIVE} žádá nový zájemce" in text
    assert f"jako koordinátor {GENITIVE}." in text
    html = readable(notice.message.get_body(("html",)).get_content())
    assert SAID_TWICE.search(text) is None and SAID_TWICE.search(html) is None

    page = client.get("/groups/ostrava-psb").get_data(as_text=True)
    assert f"<title>{NAME}</title>" in page


def test_the_welcome_names_the_group_once_in_both_languages(client, invited):  # noqa: F811
    welcome = readable(client.post(invitation_path(invited)).get_data(as_text=True))
    assert f"<title>Vítejte mezi členy {GENITIVE}</title>" in welcome
    already = readable(client.get(invitation_path(invited) + "?lang=en").get_data(as_text=True))
    assert "you are a member of the group" in already
    for page in (welcome, already):
        assert SAID_TWICE.search(page) is None, SAID_TWICE.search(page)


def test_an_english_name_that_says_group_is_not_introduced_either(client, invited):  # noqa: F811
    invited.mailing_list.name = "Working group Brno"
    from service.extensions import db

    db.session.commit()
    czech = readable(client.post(invitation_path(invited)).get_data(as_text=True))
    assert "<title>Vítejte mezi členy Working group Brno</title>" in czech
    english = readable(client.get("/groups/ostrava-psb?lang=en").get_data(as_text=True))
    assert SAID_TWICE.search(czech) is None and SAID_TWICE.search(english) is None
