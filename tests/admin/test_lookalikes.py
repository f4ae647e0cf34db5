"""Look-alike addresses (a Cyrillic "а" in a Latin domain) show in ASCII with a warning."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from service.extensions import db
from service.lookalikes import displayed, is_mixed_script
from service.models import Subscriber
from tests.conftest import log_in, process_signups

LOOKALIKE = "jan@p\u0430ypal.cz"  # Cyrillic а (U+0430) in a Latin name
PUNYCODE = "jan@xn--pypal-4ve.cz"
BADGE = "pozor: doména míchá písma"


def sign_up(client, email: str) -> Subscriber:
    """Subscribe through the public form, as anyone on the website can."""
    response = client.post("/subscribe", data={"email": email, "list": "zpravodaj"})
    assert response.status_code == 202, response.text
    process_signups()
    return db.session.scalar(select(Subscriber).order_by(Subscriber.id.desc()))


def test_a_mixed_script_domain_shows_in_ascii_with_a_badge(app, client, accounts):
    person = sign_up(app.test_client(), LOOKALIKE)
    log_in(client, accounts.editor.email)
    for path in ("/admin/subscribers", f"/admin/subscribers/{person.id}"):
        page = client.get(path).text
        assert PUNYCODE in page
        assert BADGE in page
        assert "p\u0430ypal" not in page  # not even in the page title


def test_a_czech_domain_with_diacritics_stays_in_unicode(app, client, accounts):
    person = sign_up(app.test_client(), "jana@příklad.cz")
    log_in(client, accounts.editor.email)
    for path in ("/admin/subscribers", f"/admin/subscribers/{person.id}"):
        page = client.get(path).text
        assert "jana@příklad.cz" in page
        assert "xn--" not in page
        assert BADGE not in page


def test_a_lookalike_account_shows_in_ascii_in_the_account_list(client, accounts):
    from service.accounts import create_user

    create_user("jan@p\u0430ypal.cz", "heslo-pro-podvodnika", "editor")
    db.session.commit()
    log_in(client, accounts.admin.email)
    page = client.get("/admin/users").text
    assert re.search(re.escape(PUNYCODE) + r"</span> <span class=\"badge badge-warning\"", page)


@pytest.mark.parametrize(
    "email, shown, lookalike",
    [
        (LOOKALIKE, PUNYCODE, True),
        ("jan@P\u0410YPAL.cz", PUNYCODE, True),  # capital Cyrillic А
        ("jana@příklad.cz", "jana@příklad.cz", False),
        ("ivan@пример.рф", "ivan@пример.рф", False),  # one script: Cyrillic throughout
        ("yuki@例え.jp", "yuki@例え.jp", False),  # Han with Hiragana
        ("info@sony日本.jp", "info@sony日本.jp", False),  # Latin with Han: allowed for Japanese
        ("x@bank-\u03b1.cz", "x@xn--bank--h9d.cz", True),  # Greek alpha in a Latin label
        ("petr@example.org", "petr@example.org", False),
    ],
)
def test_the_mixed_script_rule(email, shown, lookalike):
    assert (displayed(email).text, displayed(email).lookalike) == (shown, lookalike)


def test_digits_and_hyphens_go_with_any_script():
    assert not is_mixed_script("пример-2026")
    assert is_mixed_script("пример-example")
