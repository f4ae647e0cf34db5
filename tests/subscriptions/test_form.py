"""The sign-up form: full page, embeddable page, HTML and JSON posts."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask import current_app
from flask_limiter.util import get_qualified_name
from redis import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from service import consent, jobs
from service.addresses import parse_address
from service.clock import utcnow
from service.consent import RequestInfo
from service.database import DriverStatement
from service.dev.processes import free_port
from service.extensions import db
from service.jobs import MAIL_QUEUE, SIGNUP_DRAIN_QUEUED, redis_connection
from service.models import (
    ConsentEvent,
    MailingList,
    OutgoingMail,
    SignupRequest,
    Subscriber,
    Subscription,
)
from service.subscriptions import rate_limits, signup
from service.web_extensions import limiter
from tests.conftest import process_signups
from tests.test_addresses import INVALID

HEADING = "Přihlaste se k odběru novinek a Zpravodaje sociálního bydlení"


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("path", ["/subscribe", "/embed/subscribe"])
def test_form_is_czech_and_offers_both_newsletters(client, path):
    response = client.get(path)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert HEADING in page
    assert 'lang="cs"' in page
    assert 'value="zpravodaj" checked' in page
    assert 'value="novinky"' in page
    assert "ostrava-psb" not in page  # working groups are not on the public form


def test_list_parameter_narrows_the_form(client):
    page = client.get("/subscribe?list=novinky").get_data(as_text=True)
    assert 'value="novinky" checked' in page
    assert 'value="zpravodaj"' not in page


def test_narrowed_form_stays_narrowed_after_an_error(client):
    page = client.get("/embed/subscribe?list=novinky").get_data(as_text=True)
    assert 'action="/subscribe?list=novinky"' in page
    response = client.post(
        "/subscribe?list=novinky",
        data={"email": "x@@y", "list": "novinky", "list_choice": "1", "form": "embed"},
    )
    again = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="novinky" checked' in again
    assert 'value="zpravodaj"' not in again
    assert 'action="/subscribe?list=novinky"' in again


def test_embed_page_may_be_framed_by_the_website_only(client, app):
    embed = client.get("/embed/subscribe")
    assert (
        "frame-ancestors 'self' https://www.socialnibydleni.example"
        in embed.headers["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in embed.headers
    page = client.get("/subscribe")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


# Every invalid address of the table is refused where that is decided, in
# tests/test_addresses.py; through the app go a few of each kind, as a form and as JSON.
THROUGH_THE_APP = (
    "empty",
    "doubled @",
    "header injection CRLF",
    "two addresses with comma",
    "display name",
    "zero-width space",
    "local part over 64 octets",
    "special-use TLD",
)
INVALID_THROUGH_THE_APP = [(raw, why) for raw, why in INVALID if why in THROUGH_THE_APP]
assert len(INVALID_THROUGH_THE_APP) == len(THROUGH_THE_APP)
APP_IDS = [why for _, why in INVALID_THROUGH_THE_APP]


@pytest.mark.parametrize(("raw", "why"), INVALID_THROUGH_THE_APP, ids=APP_IDS)
def test_invalid_address_is_flagged_in_czech_and_kept(client, raw, why):
    from markupsafe import escape

    response = client.post(
        "/subscribe", data={"email": raw, "list": "zpravodaj", "list_choice": "1"}
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert '<p class="error" id="email-error" role="alert">Neplatný e-mail.</p>' in page
    assert f'name="email" value="{escape(raw)}"' in page  # kept, as typed
    assert count(Subscriber) == 0
    assert count(OutgoingMail) == 0
    assert count(ConsentEvent) == 0


@pytest.mark.parametrize(("raw", "why"), INVALID_THROUGH_THE_APP, ids=APP_IDS)
def test_invalid_address_in_json_is_refused_in_czech(client, raw, why):
    response = client.post("/subscribe", json={"email": raw, "list": ["zpravodaj"]})
    assert response.status_code == 422
    assert response.json["errors"] == {"email": "Neplatný e-mail."}
    # A stable code beside the Czech text (issue 16), the text itself unchanged.
    assert response.json["codes"] == {"email": "invalid_email"}
    assert count(Subscriber) == 0
    assert count(OutgoingMail) == 0
    assert count(ConsentEvent) == 0


def test_typed_value_is_shown_again_escaped(client):
    response = client.post("/subscribe", data={"email": 'jan"<b>@@x', "name": "Jan <Novák>"})
    page = response.get_data(as_text=True)
    assert 'value="jan&#34;&lt;b&gt;@@x"' in page
    assert 'value="Jan &lt;Novák&gt;"' in page


def test_embed_post_answers_in_the_embed_layout(client):
    response = client.post("/subscribe", data={"email": "x@", "form": "embed"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'class="embed"' in page
    assert "Neplatný e-mail." in page


def test_valid_address_gets_202_and_check_your_mailbox(client):
    response = client.post(
        "/subscribe", data={"email": " jana@seznam.cz ", "list": "zpravodaj", "list_choice": "1"}
    )
    assert response.status_code == 202
    assert "Zkontrolujte svou e-mailovou schránku" in response.get_data(as_text=True)
    assert count(Subscriber) == 0  # the request is stored; its job does the rest
    process_signups()
    subscriber = db.session.scalar(select(Subscriber))
    assert subscriber.email == "jana@seznam.cz"
    assert [s.status for s in subscriber.subscriptions] == ["pending"]


def test_both_lists_can_be_ticked(client):
    client.post(
        "/subscribe",
        data={"email": "jana@seznam.cz", "list": ["zpravodaj", "novinky"], "list_choice": "1"},
    )
    process_signups()
    subscriptions = db.session.scalars(select(Subscription)).all()
    assert sorted(s.mailing_list.slug for s in subscriptions) == ["novinky", "zpravodaj"]
    assert count(OutgoingMail) == 1  # one confirmation covers both


def test_unticking_every_list_is_an_error(client):
    response = client.post("/subscribe", data={"email": "jana@seznam.cz", "list_choice": "1"})
    assert response.status_code == 422
    assert "Vyberte alespoň jeden odběr." in response.get_data(as_text=True)
    assert count(Subscriber) == 0


def test_without_list_field_the_newsletter_is_the_default(client):
    client.post("/subscribe", data={"email": "jana@seznam.cz"})
    process_signups()
    assert db.session.scalar(select(Subscription)).mailing_list.slug == "zpravodaj"


@pytest.mark.parametrize("slug", ["neexistuje", "ostrava-psb"])
def test_unknown_or_group_list_is_refused(client, slug):
    response = client.post("/subscribe", json={"email": "jana@seznam.cz", "list": slug})
    assert response.status_code == 422
    assert response.json["errors"] == {"list": "Tento odběr neexistuje."}
    assert count(Subscriber) == 0


def test_name_with_line_break_is_refused(client):
    response = client.post("/subscribe", json={"email": "jana@seznam.cz", "name": "Jana\r\nBcc: x"})
    assert response.status_code == 422
    assert response.json["errors"]["name"] == "Jméno obsahuje nepovolené znaky."


def test_json_post_answers_json(client):
    response = client.post("/subscribe", json={"email": "jana@seznam.cz", "list": ["novinky"]})
    assert response.status_code == 202
    assert response.json == {"status": "pending"}
    bad = client.post("/subscribe", json={"email": "jana@@seznam.cz"})
    assert bad.status_code == 422
    assert bad.json["errors"] == {"email": "Neplatný e-mail."}


@pytest.mark.parametrize("email", [None, 12, ["jana@seznam.cz"], {"a": 1}, True])
def test_json_with_wrong_types_is_invalid_not_a_crash(client, email):
    response = client.post("/subscribe", json={"email": email})
    assert response.status_code == 422
    assert response.json["errors"] == {"email": "Neplatný e-mail."}


@pytest.mark.parametrize("body", ["[1, 2]", "not json", '"text"', "{"])
def test_unreadable_json_is_a_400_in_czech(client, body):
    response = client.post("/subscribe", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["errors"] == {"request": "Požadavek se nepodařilo přečíst."}


def test_same_answer_whether_new_pending_or_confirmed(client, app):
    answers = []
    for _ in range(2):
        answers.append(client.post("/subscribe", json={"email": "jana@seznam.cz"}))
    process_signups()
    subscription = db.session.scalar(select(Subscription))
    subscription.status = "confirmed"
    db.session.commit()
    answers.append(client.post("/subscribe", json={"email": "jana@seznam.cz"}))
    assert {(r.status_code, r.get_data()) for r in answers} == {(202, answers[0].get_data())}
    html = [
        client.post("/subscribe", data={"email": address}).get_data(as_text=True)
        for address in ("nova@seznam.cz", "jana@seznam.cz")
    ]
    assert html[0] == html[1]
    process_signups()
    assert count(Subscriber) == 2


def test_honeypot_drops_bots_silently(client, outbox, app):
    response = client.post(
        "/subscribe", data={"email": "bot@seznam.cz", "website": "http://spam.example"}
    )
    assert response.status_code == 202
    assert "Zkontrolujte svou e-mailovou schránku" in response.get_data(as_text=True)
    json_response = client.post("/subscribe", json={"email": "bot@seznam.cz", "website": "x"})
    assert json_response.json == {"status": "pending"}
    assert count(Subscriber) == 0
    assert count(OutgoingMail) == 0
    assert count(ConsentEvent) == 0


def test_cors_lets_the_configured_website_post(client):
    origin = "https://www.socialnibydleni.example"
    preflight = client.options(
        "/subscribe",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    post = client.post("/subscribe", json={"email": "jana@seznam.cz"}, headers={"Origin": origin})
    assert post.headers["Access-Control-Allow-Origin"] == origin
    process_signups()
    event = db.session.scalar(select(ConsentEvent))
    assert event.origin == origin
    assert event.channel == "api"


def test_cors_refuses_other_origins(client):
    post = client.post(
        "/subscribe", json={"email": "jana@seznam.cz"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in post.headers


def test_concurrent_signups_of_one_address_make_one_subscriber(client):
    for _ in range(3):
        client.post("/subscribe", json={"email": "Jana@Seznam.cz"})
        client.post("/subscribe", json={"email": "jana@seznam.cz"})
    process_signups()
    assert count(Subscriber) == 1
    assert count(Subscription) == 1


def test_confirmation_mails_per_address_are_capped(client, app):
    for _ in range(6):
        assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
    process_signups()
    assert count(OutgoingMail) == app.config["CONFIRMATION_MAILS_PER_HOUR"]


class TestRateLimits:
    @pytest.fixture
    def app_config(self, app_config):
        app_config.update(
            RATE_LIMITS=True,
            RATE_LIMIT_SUBSCRIBE_IP="4 per minute",
            RATE_LIMIT_SUBSCRIBE_ADDRESS="2 per hour",
        )
        return app_config

    def test_per_address_limit_answers_429_in_czech(self, client):
        for _ in range(2):
            assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
        limited = client.post("/subscribe", json={"email": "Jana@seznam.cz"})
        assert limited.status_code == 429
        assert limited.json == {
            "errors": {"request": "Příliš mnoho pokusů. Zkuste to prosím znovu za chvíli."},
            "codes": {"request": "rate_limited"},
        }
        assert "Retry-After" in limited.headers
        page = client.post("/subscribe", data={"email": "jana@seznam.cz"})
        assert page.status_code == 429
        assert "Příliš mnoho pokusů" in page.get_data(as_text=True)

    def test_the_429_is_shown_inside_the_form_keeping_what_was_typed(self, client):
        typed = {"email": "jana@seznam.cz", "name": "Jana Nováková", "list_choice": "1"}
        for _ in range(2):
            assert client.post("/subscribe", data={**typed, "list": "zpravodaj"}).status_code == 202
        limited = client.post("/subscribe", data={**typed, "list": "zpravodaj"})
        assert limited.status_code == 429
        assert "Retry-After" in limited.headers
        page = limited.get_data(as_text=True)
        assert 'class="subscribe-form"' in page
        assert 'value="jana@seznam.cz"' in page
        assert 'value="Jana Nováková"' in page
        assert 'value="zpravodaj" checked' in page
        assert "Příliš mnoho pokusů" in page

    def test_the_429_in_english_keeps_the_form_in_english(self, client):
        for _ in range(2):
            client.post("/subscribe?lang=en", data={"email": "jana@seznam.cz"})
        limited = client.post("/subscribe?lang=en", data={"email": "jana@seznam.cz"})
        assert limited.status_code == 429
        page = limited.get_data(as_text=True)
        assert "Too many attempts" in page
        assert 'value="jana@seznam.cz"' in page
        assert '<html lang="en">' in page

    def test_invalid_addresses_never_count_toward_the_address_limit(self, client):
        # Before: "abc" typed a few times was locked for the rest of the hour.
        statuses = [client.post("/subscribe", json={"email": "abc"}).status_code for _ in range(3)]
        assert statuses == [422, 422, 422]
        assert client.post("/subscribe", json={"email": "abc@seznam.cz"}).status_code == 202

    def test_rate_limit_keys_in_redis_hold_no_address(self, client, app):

        client.post("/subscribe", json={"email": "jana.novakova@seznam.cz"})
        keys = [key.decode() for key in redis_connection().scan_iter("*")]
        assert any("subscribe-address" in key for key in keys), keys
        assert not any("jana" in key or "seznam" in key for key in keys), keys

    def test_limit_inside_the_embedded_form_keeps_the_frame_layout(self, client):
        for _ in range(3):
            response = client.post("/subscribe", data={"email": "jana@seznam.cz", "form": "embed"})
        assert response.status_code == 429
        page = response.get_data(as_text=True)
        assert 'class="embed"' in page
        assert "Příliš mnoho pokusů" in page
        assert "https://www.socialnibydleni.example" in response.headers["Content-Security-Policy"]

    def test_per_ip_limit(self, client):
        statuses = [
            client.post("/subscribe", json={"email": f"clovek{i}@seznam.cz"}).status_code
            for i in range(5)
        ]
        assert statuses == [202, 202, 202, 202, 429]

    def test_a_sign_up_costs_one_redis_round_trip(self, client):
        """Before: EVALSHA GET SET EVALSHA GET TTL for an accepted sign-up (Flask-Limiter's
        hit of the IP limit, test of the address limit, the hand-off, the address limit's
        deferred hit, two reads for the headers), EVALSHA GET GET TTL for a refused form.
        SQLite: the hand-off was a second round trip, after the commit, until the
        sign-ups' lock file let it go into the script (routes.py `_store`)."""
        client.post("/subscribe", json={"email": "prvni@seznam.cz"})  # the script loaded
        statuses = []

        def post(address: str) -> None:
            statuses.append(client.post("/subscribe", json={"email": address}).status_code)

        assert redis_commands(lambda: post("jana@seznam.cz")) == ["evalsha"]
        assert redis_commands(lambda: post("abc")) == ["evalsha"]
        assert statuses == [202, 422]

    def test_a_script_redis_does_not_hold_is_sent_whole_once(self, client):
        """A new or flushed Redis has no script for EVALSHA's digest: EVAL sends it, which
        stores it for the sign-ups after."""
        client.post("/subscribe", json={"email": "prvni@seznam.cz"})
        redis_connection().script_flush()
        statuses = []

        def post(address: str) -> None:
            statuses.append(client.post("/subscribe", json={"email": address}).status_code)

        assert redis_commands(lambda: post("jana@seznam.cz")) == ["evalsha", "eval"]
        assert redis_commands(lambda: post("petr@seznam.cz")) == ["evalsha"]
        assert statuses == [202, 202]
        assert redis_connection().get(SIGNUP_DRAIN_QUEUED)  # handed over, by the EVAL too
        limited = [client.post("/subscribe", json={"email": "eva@seznam.cz"}) for _ in range(3)]
        assert [r.status_code for r in limited] == [202, 429, 429]  # the IP limit: counted

    def test_the_scripts_own_connection_leaves_the_pools_room_alone(self, client, app, caplog):
        """jobs.command's connection is not one of the client's pool: a pool limited to one
        connection (`?max_connections=1`) serves the app's other commands and the script."""
        real = app.extensions["redis"]
        app.extensions["redis"] = Redis.from_url(current_app.config["REDIS_URL"], max_connections=1)
        try:
            assert redis_connection().ping()  # the pool's one connection, made and kept
            for address in ("jana@seznam.cz", "petr@seznam.cz"):
                response = client.post("/subscribe", json={"email": address})
                assert response.status_code == 202
            assert redis_connection().ping()
            assert response.headers["X-RateLimit-Remaining"] == "2"  # counted in Redis
            assert "Redis away" not in caplog.text  # before: MaxConnectionsError, in memory
        finally:
            app.extensions["redis"] = real

    def test_a_script_whose_reply_is_lost_leaves_no_hand_off_without_a_job(
        self, client, monkeypatch
    ):
        """The script ran (the hand-off key set) but its reply was lost (a timeout): the
        sign-up is stored as with Redis away, and a drain job is queued for the key, which
        otherwise named a job nobody queued and held other hand-offs up until it expired."""
        real = jobs.command

        def lost_reply(*args):
            real(*args)
            raise RedisTimeoutError("Timeout reading from socket")

        monkeypatch.setattr(rate_limits, "command", lost_reply)
        assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
        named = redis_connection().get(SIGNUP_DRAIN_QUEUED).decode()
        assert named in Queue(MAIL_QUEUE, connection=redis_connection()).get_job_ids()

    def test_a_connection_redis_dropped_is_replaced_and_the_sign_up_counted(self, client):
        """The script runs on the thread's own connection (jobs.command); Redis restarted
        or the connection killed, the sign-up goes through on a new one, without the
        in-memory fallback (which would forget the count)."""
        assert client.post("/subscribe", json={"email": "prvni@seznam.cz"}).status_code == 202
        own = jobs.command("CLIENT", "ID")
        assert redis_connection().client_kill_filter(_id=own) == 1
        response = client.post("/subscribe", json={"email": "jana@seznam.cz"})
        assert response.status_code == 202
        assert response.headers["X-RateLimit-Remaining"] == "2"  # counted in Redis: 2 of 4
        assert jobs.command("CLIENT", "ID") != own

    def test_no_write_lock_is_held_across_the_redis_round_trips_on_sqlite(
        self, client, app, monkeypatch
    ):
        """SQLite has one writer at a time: before, the sign-up's INSERT took the write lock
        and held it through the rate limits' round trip to Redis, so the other web
        processes' sign-ups waited in SQLite's busy handler meanwhile. Now another
        connection can write at once during each round trip, and the row is committed
        before the hand-off. PostgreSQL: the script runs inside the open transaction (a
        refused sign-up is rolled back, no commit spent on it)."""
        seen: list[tuple[str, bool, int]] = []
        sqlite = db.engine.dialect.name == "sqlite"

        def another_writer_can_write() -> bool:
            with db.engine.connect() as other:
                if sqlite:
                    other.exec_driver_sql("PRAGMA busy_timeout = 0")
                try:
                    other.execute(text("UPDATE mailing_list SET name = name WHERE 0 = 1"))
                    other.execute(text("INSERT INTO signup_request_probe VALUES (1)"))
                except OperationalError:
                    return False
                finally:
                    other.rollback()
            return True

        def committed_rows() -> int:
            with db.engine.connect() as other:
                return other.scalar(select(func.count()).select_from(SignupRequest))

        def watched(name, real):
            def call(*args, **kwargs):
                seen.append((name, another_writer_can_write(), committed_rows()))
                return real(*args, **kwargs)

            return call

        with db.engine.begin() as setup:
            setup.execute(text("CREATE TABLE signup_request_probe (x INTEGER)"))
        try:
            monkeypatch.setattr(
                rate_limits, "_run_script", watched("script", rate_limits._run_script)
            )
            monkeypatch.setattr(
                rate_limits, "signal_signups", watched("hand-off", rate_limits.signal_signups)
            )
            assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
            assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
            assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 429
        finally:
            with db.engine.begin() as setup:
                setup.execute(text("DROP TABLE signup_request_probe"))
        # The hand-off is in the script on both: on SQLite before the INSERT (the sign-ups'
        # lock file held meanwhile), on PostgreSQL after it, inside the open transaction.
        assert seen == [("script", True, 0), ("script", True, 1), ("script", True, 2)]
        assert committed_rows() == 2

    def test_a_sign_up_to_a_list_replaced_since_is_stored_and_counted_once(self, client):
        """The process remembers the list's id; the list renamed and another made under its
        slug, the INSERT for the remembered id writes nothing and the slug is looked up
        again. The limits are checked once (SQLite checks them before that INSERT)."""
        first = client.post("/subscribe", json={"email": "jana@seznam.cz"})
        assert first.headers["X-RateLimit-Remaining"] == "3"
        db.session.execute(
            update(MailingList).where(MailingList.slug == "zpravodaj").values(slug="stary")
        )
        db.session.add(MailingList(slug="zpravodaj", name="Nový zpravodaj"))
        db.session.commit()
        new_id = db.session.scalar(select(MailingList.id).filter_by(slug="zpravodaj"))
        second = client.post("/subscribe", json={"email": "petr@seznam.cz"})
        assert second.status_code == 202
        assert second.headers["X-RateLimit-Remaining"] == "2"  # counted once, not twice
        stored = db.session.scalars(select(SignupRequest.list_ids).order_by(SignupRequest.id))
        assert list(stored)[-1] == [new_id]
        db.session.commit()

    def test_a_refused_sign_up_stores_nothing_and_names_its_limit(self, client):
        for _ in range(2):
            accepted = client.post("/subscribe", json={"email": "jana@seznam.cz"})
            assert accepted.status_code == 202
        assert accepted.headers["X-RateLimit-Limit"] == "4"  # per minute, the shortest window
        assert accepted.headers["X-RateLimit-Remaining"] == "2"
        limited = client.post("/subscribe", json={"email": "jana@seznam.cz"})
        assert limited.status_code == 429
        assert limited.headers["X-RateLimit-Limit"] == "2"  # the address's, per hour
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert 3500 < int(limited.headers["Retry-After"]) <= 3600
        assert db.session.scalar(select(func.count()).select_from(SignupRequest)) == 2
        db.session.commit()

    def test_with_redis_down_the_limits_hold_in_memory_and_sign_ups_are_stored(self, client, app):
        real = app.extensions["redis"]
        app.extensions["redis"] = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        try:
            statuses = [
                client.post("/subscribe", json={"email": f"clovek{i}@seznam.cz"}).status_code
                for i in range(5)
            ]
        finally:
            app.extensions["redis"] = real
        assert statuses == [202, 202, 202, 202, 429]
        assert db.session.scalar(select(func.count()).select_from(SignupRequest)) == 4
        db.session.commit()

    def test_flask_limiter_skips_only_endpoints_it_has_no_limits_for(self, app, client):
        """Its hook skips `POST /subscribe` (rate_limits.py counts that endpoint's limits):
        skipping must lose nothing, so Flask-Limiter holds no limit of its own there,
        while the sign-in it does limit is still checked by it."""
        assert limiter.own_limits_endpoints == {"subscriptions.subscribe"}
        for endpoint in limiter.own_limits_endpoints:
            name = get_qualified_name(app.view_functions[endpoint])
            with app.test_request_context("/subscribe", method="POST"):
                defaults, decorated = limiter.limit_manager.resolve_limits(
                    app, endpoint, endpoint.split(".")[0], name, True, False
                )
                assert (list(defaults), list(decorated)) == ([], [])
        client.post("/subscribe", json={"email": "jana@seznam.cz"})
        with app.test_request_context("/admin/login", method="POST"):
            name = get_qualified_name(app.view_functions["admin.login"])
            _, decorated = limiter.limit_manager.resolve_limits(
                app, "admin.login", "admin", name, False, True
            )
            assert decorated

    def test_flask_limiters_other_hooks_skip_the_same_endpoints_only(self, app, client):
        """Its after-request and teardown hooks are wrapped to skip them too: both found,
        and the sign-in it limits still gets its limit's headers from them."""
        assert limiter.skipped_hooks == ["__inject_headers", "__release_context"]
        signup = client.post("/subscribe", json={"email": "jana@seznam.cz"})
        assert signup.status_code == 202
        assert len(signup.headers.getlist("X-RateLimit-Limit")) == 1  # rate_limits.py's
        sign_in = client.post("/admin/login", data={"email": "x@seznam.cz", "password": "x"})
        assert sign_in.headers.get("X-RateLimit-Limit")

    def test_reading_the_form_is_not_limited(self, client):
        for _ in range(10):
            assert client.get("/subscribe").status_code == 200


def redis_commands(action) -> list[str]:
    """The commands the app's clients sent Redis while `action()` ran, each a round trip
    (those a Lua script runs inside Redis, and the handshake of the watcher's own second
    connection, left out), watched with MONITOR."""
    watcher = Redis.from_url(current_app.config["REDIS_URL"])
    with watcher.monitor() as monitor:
        action()
        watcher.echo("the end of the action")
        seen = []
        while "the end of the action" not in (command := monitor.next_command())["command"]:
            if command["client_type"] != "lua" and command["command"].split()[0] != "HELLO":
                seen.append(command["command"].split()[0].lower())
    return seen


class TestTheSignUpsOwnTransaction:
    """A sign-up stores its row on a pool connection through the driver, without the ORM
    session (signup.Recording, database.DriverStatement): the row must read back as the
    ORM would have written it, and a sign-up that fails before its commit leaves nothing."""

    @pytest.mark.parametrize("form", [False, True], ids=["json-two-lists", "form-one-list"])
    def test_the_row_reads_back_as_the_orm_writes_it(self, client, form):
        ids = {
            slug: id_ for slug, id_ in db.session.execute(select(MailingList.slug, MailingList.id))
        }
        headers = {
            "User-Agent": "Prohlížeč/1.0 (ěščřžýáíé)",
            "Origin": "https://www.socialnibydleni.example",
        }
        before = utcnow()
        if form:  # the common sign-up: one newsletter whose id the process knows by now
            client.post("/subscribe", data={"email": "prvni@seznam.cz", "list": "zpravodaj"})
            response = client.post(
                "/subscribe?lang=en",
                data={"email": "Jana@Příklad.cz", "name": "Jana Nováková", "list": "zpravodaj"},
                headers=headers,
            )
            lists = [ids["zpravodaj"]]
        else:
            response = client.post(
                "/subscribe",
                json={
                    "email": "Jana@Příklad.cz",
                    "name": "Jana Nováková",
                    "list": ["novinky", "zpravodaj"],
                },
                headers=headers,
            )
            lists = [ids["novinky"], ids["zpravodaj"]]
        assert response.status_code == 202
        row = db.session.scalars(select(SignupRequest).order_by(SignupRequest.id.desc())).first()
        assert row is not None
        assert (row.email, row.ascii_email, row.email_key) == (
            "Jana@příklad.cz",
            "Jana@xn--pklad-zsa96e.cz",
            "jana@příklad.cz",
        )
        assert row.name == "Jana Nováková"
        assert row.list_ids == lists
        assert row.consent_text_id == consent.form_consent_text_id(None)
        assert (row.channel, row.ip) == ("page" if form else "api", "127.0.0.1")
        assert (row.user_agent, row.origin) == (headers["User-Agent"], headers["Origin"])
        assert row.language == ("en" if form else "cs")
        assert isinstance(row.requested_at, datetime)
        assert before <= row.requested_at <= utcnow()
        db.session.commit()
        process_signups()
        assert db.session.scalar(select(Subscriber.email).filter_by(email_key="jana@příklad.cz"))

    def test_a_sign_up_that_fails_before_its_commit_leaves_no_row_and_no_lock(
        self, client, monkeypatch
    ):
        """Its connection goes back to the pool rolled back: on SQLite an open write
        transaction left on it would hold the database's one write lock, and the next
        sign-up would wait SQLite's busy timeout and fail."""
        failing = {"left": 1}
        real_commit = signup.Recording.commit

        def commit(recording):
            if failing["left"]:
                failing["left"] -= 1
                raise OperationalError("COMMIT", {}, Exception("the disk went away"))
            real_commit(recording)

        monkeypatch.setattr(signup.Recording, "commit", commit)
        assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 500
        assert client.post("/subscribe", json={"email": "petr@seznam.cz"}).status_code == 202
        emails = db.session.scalars(select(SignupRequest.email)).all()
        assert emails == ["petr@seznam.cz"]
        db.session.commit()

    def test_a_driver_error_is_raised_as_sqlalchemys_and_a_dropped_connection_never_reused(
        self, app, client
    ):
        """The sign-up's statements skip SQLAlchemy's execution, not its exceptions: a
        foreign key the row breaks is an IntegrityError, and on PostgreSQL a connection the
        server dropped is invalidated rather than handed to the next sign-up."""
        address = parse_address("jana@seznam.cz", allow_smtputf8=True)
        info = RequestInfo(ip="127.0.0.1", user_agent=None, channel="api", origin=None)
        with app.test_request_context("/subscribe", method="POST"):
            with pytest.raises(IntegrityError), signup.recording() as recording:
                recording.insert(address, "", [1], 999_999, info, "cs")  # no such consent text
            if db.engine.dialect.name == "postgresql":
                with pytest.raises(OperationalError) as dropped, signup.recording() as recording:
                    with db.engine.connect() as other:  # as a restarted server does
                        other.execute(
                            text("SELECT pg_terminate_backend(:pid)"),
                            # psycopg's connection, behind the pool's proxy: its server process
                            {"pid": recording._connection.dbapi_connection.info.backend_pid},
                        )
                    recording.insert(address, "", [1], 1, info, "cs")
                assert dropped.value.connection_invalidated
        assert db.engine.pool.checkedout() == 0
        assert client.post("/subscribe", json={"email": "petr@seznam.cz"}).status_code == 202

    def test_a_statement_finished_at_each_run_is_refused(self, app):
        expanding = select(MailingList.id).where(
            MailingList.slug.in_(bindparam("slugs", expanding=True))
        )
        with pytest.raises(ValueError, match="finished at each run"):
            DriverStatement(expanding, db.engine.dialect)
