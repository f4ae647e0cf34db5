"""The JSON API fuzzed from its own OpenAPI document with schemathesis (4.x), through WSGI.

Cases for every operation come from /api/v1/openapi.json as the app serves
it: valid ones (positive) and invalid ones (negative), with path ids that
name real issues and meetings as well as arbitrary ones, sent with an admin's
Bearer token. No answer may be a 5xx, and every answer must be what the
document says (status code, content type, body schema).

Runs on SQLite only: the API code is the same on both databases, and
tests/api covers PostgreSQL with hand-written cases.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from service.accounts import create_token
from service.clock import utcnow
from service.extensions import db
from service.models import Issue, MailingList, Meeting
from tests.conftest import add_confirmed_subscribers
from tests.security.test_properties import PROFILE, examples

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The suite runs 300 of each (derandomised); FUZZ=long runs 3000 of each, random.
EXAMPLES = {GenerationMode.POSITIVE: examples(300), GenerationMode.NEGATIVE: examples(300)}
SEEN: dict[str, int] = {}
STATUSES: dict = {}


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def api(app, accounts):
    """The schema loaded from the app, the admin's headers, and ids that exist."""
    add_confirmed_subscribers("zpravodaj", 3)
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    # Many drafts and meeting invitations: sending, cancelling and attaching use
    # them up, and a fresh one keeps the successful paths reachable.
    meetings, issues = [], []
    for n in range(15):
        start = utcnow() + timedelta(days=30 + n)
        meeting = Meeting(
            list_id=group.id, uid=f"fuzz-{n}@test", start=start, end=start + timedelta(hours=1)
        )
        meetings.append(meeting)
        issues += [
            Issue(list_id=zpravodaj.id, subject=f"Koncept {n}", body="Text."),
            Issue(list_id=group.id, subject=f"Pozvánka {n}", body="Přijďte.", meeting=meeting),
        ]
    issues.append(
        Issue(list_id=zpravodaj.id, subject="Odesláno", body="Text.", status="sent", number=1)
    )
    db.session.add_all([*meetings, *issues])
    token = create_token(accounts.admin)
    db.session.commit()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    fixed = {
        "issue_id": st.sampled_from([i.id for i in issues]),
        "meeting_id": st.sampled_from([m.id for m in meetings]),
        "slug": st.sampled_from(["zpravodaj", "novinky", "ostrava-psb"]),
    }
    return schema, {"Authorization": f"Bearer {token}"}, fixed


def cases(schema, mode: GenerationMode, fixed: dict):
    """Every operation's cases: arbitrary path values, and ids that exist."""
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies.append(operation.as_strategy(generation_mode=mode))
        names = {p.name for p in operation.path_parameters}
        if names:
            chosen = st.fixed_dictionaries({n: fixed[n] for n in names if n in fixed})
            strategies.append(
                chosen.flatmap(
                    lambda values, op=operation: op.as_strategy(
                        generation_mode=mode, path_parameters=values
                    )
                )
            )
    return st.one_of(strategies)


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_api_answers_every_generated_request_as_documented_and_never_5xx(app, api, mode):
    schema, headers, fixed = api
    count = {"n": 0}

    @settings(PROFILE, max_examples=EXAMPLES[mode])
    @given(case=cases(schema, mode, fixed))
    def run(case):
        count["n"] += 1
        response = case.call(headers=headers)
        key = (case.method, case.operation.path, response.status_code)
        STATUSES[key] = STATUSES.get(key, 0) + 1

        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
    SEEN[str(mode)] = count["n"]
    if os.environ.get("FUZZ_REPORT"):  # FUZZ_REPORT=1 scripts/test … -s: what was answered
        for key in sorted(STATUSES):
            print(mode, *key, STATUSES[key], file=sys.stderr)
    STATUSES.clear()
    assert count["n"] >= EXAMPLES[mode] // 2
