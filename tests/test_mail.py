"""Composing mail: headers exactly as DESIGN.md §5.6 asks, whatever the names."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from service.mail import compose

TRICKY_NAMES = [
    'Spolek "Bydlení pro všechny" z.s., Ostrava-Poruba, koordinátor pracovní skupiny',
    'Spolek "Bydleni pro vsechny" z.s., Ostrava-Poruba, koordinator pracovni skupiny',
    "A" * 74 + '"',
    "Jana Nováková, OSPOD <Praha 14>",
    "=?utf-8?q?fake?=",
    "Back\\slash; semi: colon",
]


def build(app, name: str, **headers):
    with app.test_request_context():
        msg = compose(
            to_name=name,
            to_address="jana@seznam.cz",
            smtputf8=False,
            subject="Zpravodaj sociálního bydlení – prosinec 2026: nové metodiky a pozvánky",
            text="text",
            html="<p>html</p>",
            extra_headers=headers,
        )
        return msg.as_bytes(policy=msg.policy)


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_display_name_never_makes_a_second_recipient(app, name):
    raw = build(app, name)
    parsed = message_from_bytes(raw, policy=policy.default)
    addresses = parsed["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in addresses] == [(name, "jana@seznam.cz")]


def test_list_headers_are_written_unfolded_and_unencoded(app):
    url = "<http://zpravodaj.test/unsubscribe/" + "x" * 150 + ">"
    raw = build(
        app,
        "",
        **{
            "List-Id": "Zpravodaj <zpravodaj.socialnibydleni.example>",
            "List-Unsubscribe": url,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    lines = raw.split(b"\r\n")
    assert f"List-Unsubscribe: {url}".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert b"=?" not in b"".join(line for line in lines if line.startswith(b"List-"))


def test_header_injection_is_impossible(app):
    with pytest.raises(ValueError):
        build(app, "Jana\r\nBcc: everyone@example.cz")
    with pytest.raises(ValueError):
        build(app, "", **{"List-Id": "x\r\nBcc: everyone@example.cz"})


# --- no software or version in the headers (issue 12) ---------------------------------

SOFTWARE_HEADERS = ("X-Mailer", "User-Agent", "X-Generator", "X-Zpravodaj-Version")


def test_no_mail_names_the_software_or_its_version(app, client, outbox):
    """An X-Mailer with the version would tell an attacker which holes to try."""
    from email import message_from_bytes as parse

    from service import __version__
    from tests.conftest import add_confirmed_subscribers, run_jobs
    from tests.workers.test_delivery import make_issue, send

    client.post("/subscribe", data={"email": "jana@seznam.cz", "list": "zpravodaj"})
    add_confirmed_subscribers("zpravodaj", 1)
    send(make_issue())
    run_jobs(app)
    assert len(outbox.mails) == 2  # the confirmation and the issue
    for mail in outbox.mails:
        header = mail.data.split(b"\r\n\r\n", 1)[0]
        message = parse(mail.data, policy=policy.default)
        assert not [name for name in SOFTWARE_HEADERS if name in message], header
        assert __version__.encode() not in header
        assert b"zpravodaj/" not in header.lower() and b"python" not in header.lower()
