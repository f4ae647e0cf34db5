"""Input no form would send, and concurrency no single browser makes: never a 500."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from service.extensions import db
from service.models import ConsentEvent, OutgoingMail, SignupRequest, Subscriber, Subscription
from tests.conftest import link_to, process_signups, run_jobs
from workers.signup import process_signup


def in_threads(count: int, action) -> list:
    """Run `action()` in `count` threads released at the same moment."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        results[i] = action()

    # Daemons: a thread stuck for good fails this test, not the exit of the test process.
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck after 60 s"
    return results


def test_concurrent_signups_of_one_address_make_one_subscription(app):
    def sign_up():
        with app.test_client() as client:
            return client.post("/subscribe", json={"email": "race@seznam.cz", "list": ["novinky"]})

    responses = in_threads(8, sign_up)
    assert [r.status_code for r in responses] == [202] * 8
    # The racing part is the sign-up jobs (the requests only stored rows): run
    # the eight at the same moment, as eight workers would.
    request_ids = iter(db.session.scalars(select(SignupRequest.id)).all())
    db.session.commit()

    def process() -> str:
        with app.app_context():
            outcome = process_signup(next(request_ids))
            db.session.remove()
            return outcome

    assert in_threads(8, process) == ["done"] * 8
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Subscriber.id))) == 1
    assert db.session.scalar(select(func.count(Subscription.id))) == 1
    assert db.session.scalar(select(func.count(ConsentEvent.id))) == 8
    mails = db.session.scalar(select(func.count(OutgoingMail.id)))
    if db.engine.dialect.name == "postgresql":  # row lock: the cap is exact
        assert mails == app.config["CONFIRMATION_MAILS_PER_HOUR"]
    else:
        assert mails >= app.config["CONFIRMATION_MAILS_PER_HOUR"]


def test_concurrent_confirmations_record_one_consent(app, outbox):
    with app.test_client() as client:
        client.post("/subscribe", json={"email": "race@seznam.cz"})
    run_jobs(app)
    path = link_to(outbox.mails[0], "/confirm/")

    def confirm():
        with app.test_client() as client:
            return client.post(path)

    responses = in_threads(6, confirm)
    assert [r.status_code for r in responses] == [200] * 6
    db.session.expire_all()
    confirms = db.session.scalar(select(func.count(ConsentEvent.id)).filter_by(action="confirm"))
    assert confirms == 1


@pytest.mark.parametrize(
    "data",
    [
        {"email": "a@seznam.cz", "list": "zpravodaj\x00", "list_choice": "1"},
        {"email": "a@seznam.cz", "consent": "\x00"},
        {"email": "a\x00@seznam.cz"},
        {"email": "a@seznam.cz", "name": "Jana\x00"},
    ],
)
def test_nul_characters_are_refused_cleanly(client, data):
    response = client.post("/subscribe", data=data)
    assert response.status_code == 400
    assert "Požadavek se nepodařilo přečíst." in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Subscriber.id))) == 0


@pytest.mark.parametrize(
    "body",
    [
        '{"email": "a@seznam.cz", "list": ["\\ud800"]}',
        '{"email": "a@seznam.cz", "consent": "\\udfff"}',
        '{"email": "a@seznam.cz", "\\ud800": 1}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_unencodable_or_absurd_json_is_a_400(client, body):
    response = client.post("/subscribe", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["errors"] == {"request": "Požadavek se nepodařilo přečíst."}


def test_oversized_body_is_a_czech_413(client):
    response = client.post("/subscribe", data={"email": "a@seznam.cz", "name": "x" * 2_000_000})
    assert response.status_code == 413
    assert "Požadavek je příliš velký." in response.get_data(as_text=True)


def test_malformed_referer_is_ignored(client, app, outbox):
    response = client.post(
        "/subscribe", data={"email": "jana@seznam.cz"}, headers={"Referer": "https://x]/"}
    )
    assert response.status_code == 202
    assert db.session.scalar(select(ConsentEvent.origin)) is None
    run_jobs(app)
    path = link_to(outbox.mails[0], "/confirm/")
    assert client.post(path, headers={"Referer": "http://[::1/"}).status_code == 200


def test_signup_does_not_rename_an_existing_subscriber(client):
    client.post("/subscribe", json={"email": "jana@seznam.cz", "name": "Jana"})
    client.post("/subscribe", json={"email": "jana@seznam.cz", "name": "Podvodník"})
    process_signups()
    assert db.session.scalar(select(Subscriber.name)) == "Jana"
