"""The input guard: text no person can type is refused in every part of a request.

The review's request was `GET /meetings/%00.ics`: a NUL in a path segment got
as far as a PostgreSQL query (psycopg DataError, a 500). Here every route of
the URL map that takes path arguments is walked with such segments, and each
other part of a request (query, form, file name, JSON, headers, cookies) gets
its own attack; each must be refused with 400/404 before a single SQL
statement runs. Run with TEST_DATABASE_URL to cover PostgreSQL.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote_to_bytes

import pytest
from sqlalchemy import event, func, select

from service.extensions import db
from service.models import ConsentEvent, Subscriber
from tests.conftest import process_signups

# Percent-encoded path segments: NUL alone and inside text, another control
# character, a UTF-8-encoded lone surrogate, and bytes that are not UTF-8.
HOSTILE_SEGMENTS = ["%00", "a%00b.ics", "%01", "%ED%A0%80", "%FF%FE"]
_ARGUMENT = re.compile(r"<(?:[^>:]*:)?[^>]+>")


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements the app runs inside the block (SQLAlchemy's before_cursor_execute)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def as_served(path: str) -> dict[str, str]:
    """PATH_INFO as gunicorn passes it: the percent-decoded bytes as latin-1 (PEP 3333).

    Werkzeug's test client would replace bytes that are not UTF-8 with U+FFFD
    first; a real server hands them over as they came.
    """
    return {"PATH_INFO": unquote_to_bytes(path).decode("latin-1")}


def _routes_with_arguments(app) -> list[tuple[str, str]]:
    rules = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            rules.append((method, rule.rule))
    return rules


def test_the_walk_covers_the_routes_the_review_attacked(app):
    walked = {rule for _, rule in _routes_with_arguments(app)}
    assert "/meetings/<uid>.ics" in walked
    assert any(rule.startswith("/api/v1/issues/") for rule in walked)
    assert len(walked) >= 30


@pytest.mark.parametrize("segment", HOSTILE_SEGMENTS)
def test_every_route_with_path_arguments_refuses_unusable_segments(app, client, segment):
    refused = []
    for method, rule in _routes_with_arguments(app):
        path = _ARGUMENT.sub(segment, rule)
        with statements() as seen:
            response = client.open(path, method=method, environ_overrides=as_served(path))
        assert response.status_code in (400, 404), (method, path, response.status_code)
        assert seen == [], (method, path, seen)  # refused before any query
        refused.append(response.status_code)
    assert 400 in refused


def test_the_reviewers_request_is_a_clean_400(client):
    with statements() as seen:
        response = client.get("/meetings/%00.ics")
    assert response.status_code == 400
    assert "Požadavek se nepodařilo přečíst." in response.get_data(as_text=True)
    assert seen == []


SIGNUP = {"email": "jana@seznam.cz", "list": "zpravodaj"}


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"query_string": "list=zpravodaj%00", "data": SIGNUP},
        {"query_string": "list=%ED%A0%80", "data": SIGNUP},
        {"query_string": "list=%FF", "data": SIGNUP},
        {"data": {**SIGNUP, "name": "Jana\x00"}},
        {"data": {**SIGNUP, "file": "zapis\x00.pdf"}},
        {"json": {**SIGNUP, "name": "Jana\ud800"}},
        {"data": SIGNUP, "headers": {"User-Agent": "Mozilla/5.0\x00"}},
        {"data": SIGNUP, "headers": {"Origin": "https://web.example\x00"}},
        {"data": SIGNUP, "headers": {"Referer": "https://web.example/\x00"}},
        {"data": SIGNUP, "headers": {"Accept-Language": "cs\x00"}},
        {"data": SIGNUP, "headers": {"Cookie": 'session="\\000"'}},
        {"data": SIGNUP, "headers": {"Cookie": "lang=cs\x00"}},
    ],
    ids=[
        "query-nul",
        "query-surrogate",
        "query-not-utf8",
        "form",
        "file-name",
        "json",
        "user-agent",
        "origin",
        "referer",
        "accept-language",
        "cookie-octal-escape",
        "cookie-raw",
    ],
)
def test_every_part_of_a_signup_refuses_unusable_text(app, request_kwargs):
    # Without its cookie jar the test client sends a Cookie header as given.
    client = app.test_client(use_cookies=False)
    request_kwargs = dict(request_kwargs)  # shared by the SQLite and PostgreSQL runs
    query = request_kwargs.pop("query_string", None)
    if "file" in request_kwargs.get("data", {}):  # an upload's file name
        data = request_kwargs["data"] = dict(request_kwargs["data"])
        data["file"] = (io.BytesIO(b"%PDF-1.4"), data["file"])
    path = "/subscribe" + (f"?{query}" if query else "")
    with statements() as seen:
        response = client.post(path, **request_kwargs)
    assert response.status_code == 400
    assert seen == []
    assert db.session.scalar(select(func.count(Subscriber.id))) == 0


def test_ordinary_text_with_diacritics_still_passes(client):
    response = client.post(
        "/subscribe?list=zpravodaj",
        data={**SIGNUP, "name": "Jiří Čermák"},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Cookie": "lang=cs"},
    )
    assert response.status_code == 202
    process_signups()
    assert db.session.scalar(select(ConsentEvent.user_agent)) == "Mozilla/5.0 (X11; Linux x86_64)"
