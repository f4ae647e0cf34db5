"""The OpenAPI document: valid 3.1, served as is, complete, and not vacuous.

tests/api/test_api.py validates every real answer against it; here the
document itself is checked, each route of the app is matched to it, and one
tour goes through every documented operation with a success and an error.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.response.exceptions import InvalidData
from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts as spec_versions
from openapi_spec_validator.versions.shortcuts import get_spec_version
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from service.accounts import create_token
from service.api.openapi import DOCUMENT
from service.clock import utcnow
from service.extensions import db
from tests.api import SPEC, Api
from tests.conftest import add_confirmed_subscribers, run_jobs

METHODS = {"get", "post", "put", "patch", "delete"}


def _documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_document_is_valid_openapi_3_1():
    validate(DOCUMENT)
    assert get_spec_version(DOCUMENT) == spec_versions.OPENAPIV31


def test_served_document_is_the_document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT


def test_every_api_route_is_documented_and_nothing_else(app):
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[^>]*:)?(\w+)>", r"{\1}", rule.rule)
        routed |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == _documented_operations()


def test_every_protected_operation_documents_the_errors_it_can_answer():
    for method, path in _documented_operations():
        operation = DOCUMENT["paths"][path][method.lower()]
        statuses = set(operation["responses"])
        assert {"429", "500"} <= statuses, (method, path)
        if operation.get("security") != []:
            assert {"401", "404"} <= statuses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= statuses, (method, path)
        # What the account may not see answers 404 like what does not exist (no oracle).
        assert "403" not in statuses, (method, path)


def _check(method: str, path: str, status: int, body) -> None:
    request = EnvironBuilder(path=path, method=method).get_request()
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    SPEC.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"id": "7", "status": "sent"}),
        (200, {"id": 7, "list": "zpravodaj", "status": "odesláno"}),
        (404, {"errors": {"request": "Stránka nebyla nalezena."}}),
        (404, {"error": "Chyba", "detail": "navíc"}),
        (403, {"error": "Chyba"}),
        (422, {"error": "Chyba", "errors": {"subject": "Chyba"}}),
    ],
)
def test_validation_catches_an_answer_unlike_the_document(status, body):
    """Guards against a document so loose that every answer passes."""
    with pytest.raises((InvalidData, ResponseNotFound)):
        _check("GET", "/api/v1/issues/7", status, body)


def test_tour_of_every_operation_with_success_and_errors(app, client, accounts, outbox):
    """Each documented operation answers as documented, for success and for refusal."""
    editor = Api(client, create_token(accounts.editor))
    coordinator = Api(client, create_token(accounts.coordinator))
    anonymous = Api(client)
    db.session.commit()
    add_confirmed_subscribers("zpravodaj", 2)

    assert anonymous.get("/api/v1/openapi.json").status_code == 200
    assert editor.get("/api/v1/lists").status_code == 200
    assert anonymous.get("/api/v1/lists").status_code == 401

    new = {"subject": "Zpravodaj 1/2027", "body": "Text vydání."}
    created = editor.post("/api/v1/lists/zpravodaj/issues", new)
    assert created.status_code == 201
    issue = f"/api/v1/issues/{created.get_json()['id']}"
    assert coordinator.post("/api/v1/lists/zpravodaj/issues", new).status_code == 404
    assert editor.post("/api/v1/lists/neni/issues", new).status_code == 404
    assert editor.post("/api/v1/lists/zpravodaj/issues", {"subject": ""}).status_code == 422
    assert (
        editor.post("/api/v1/lists/zpravodaj/issues", data="{", content_type="application/json")
    ).status_code == 400
    assert editor.post("/api/v1/lists/zpravodaj/issues", data="a=b").status_code == 415

    assert editor.get(issue).status_code == 200
    assert coordinator.get(issue).status_code == 404
    assert editor.get("/api/v1/issues/999999").status_code == 404

    assert editor.post(issue + "/pause").status_code == 409
    assert editor.post(issue + "/resume").status_code == 409
    assert editor.post(issue + "/send", {"at": "včera"}).status_code == 422
    assert editor.post(issue + "/send").status_code == 202
    assert editor.post(issue + "/send").status_code == 409
    assert editor.post(issue + "/pause").status_code == 200
    assert editor.post(issue + "/resume").status_code == 200
    run_jobs(app)
    assert editor.get(issue).get_json()["status"] == "sent"
    assert editor.post(issue + "/cancel").status_code == 409

    meeting_start = utcnow() + timedelta(days=20)
    invitation = {
        **new,
        "meeting": {
            "start": meeting_start.isoformat() + "Z",
            "end": (meeting_start + timedelta(hours=2)).isoformat() + "Z",
            "location": "Radnice",
        },
    }
    group = editor.post("/api/v1/lists/ostrava-psb/issues", invitation).get_json()
    meeting = f"/api/v1/meetings/{group['meeting']['id']}"
    assert editor.post(meeting + "/update", invitation["meeting"]).status_code == 201
    assert editor.post(meeting + "/update", {"start": "x"}).status_code == 422
    assert editor.post(meeting + "/cancel").status_code == 202
    assert editor.post(meeting + "/cancel").status_code == 409
    assert editor.post(f"/api/v1/issues/{group['id']}/attachments", data="").status_code == 422

    # A series: one date moved, one cancelled, the rest ended.
    rhythm = {**invitation, "meeting": {**invitation["meeting"], "rrule": "FREQ=WEEKLY"}}
    weekly = editor.post("/api/v1/lists/ostrava-psb/issues", rhythm).get_json()
    assert editor.post(f"/api/v1/issues/{weekly['id']}/send").status_code == 202
    dates = editor.get(f"/api/v1/issues/{weekly['id']}").get_json()["meeting"]["dates"]
    series = f"/api/v1/meetings/{weekly['meeting']['id']}/dates/"
    first, second, third, fourth = (d["key"] for d in dates[:4])
    assert editor.post(series + f"{first}/update", invitation["meeting"]).status_code == 201
    assert editor.post(series + f"{first}/update", {"start": "x"}).status_code == 422
    assert editor.post(series + f"{second}/cancel").status_code == 202
    assert editor.post(series + f"{second}/cancel").status_code == 409
    later = dates[3]["start"].replace("+00:00", "")
    moved = {"start": later + "Z", "end": later + "Z"}  # ends as it starts
    assert editor.post(series + f"{fourth}/move-following", moved).status_code == 422
    moved["end"] = (datetime.fromisoformat(later) + timedelta(hours=2)).isoformat() + "Z"
    assert editor.post(series + f"{fourth}/move-following", moved).status_code == 202
    assert editor.post(series + f"{fourth}/move-following", moved).status_code == 409
    assert editor.post(series + f"{third}/cancel-following").status_code == 202
    assert editor.post(series + f"{third}/cancel-following").status_code == 409

    other = editor.post("/api/v1/lists/zpravodaj/issues", new).get_json()["id"]
    assert editor.post(f"/api/v1/issues/{other}/cancel").status_code == 200
    assert editor.call("DELETE", issue).status_code == 405
    assert editor.get("/api/v1/neni").status_code == 404

    exercised = {
        (
            m,
            re.sub(
                r"/dates/\{issue_id\}",
                "/dates/{recurrence_id}",
                re.sub(r"/meetings/\{issue_id\}", "/meetings/{meeting_id}", p),
            ),
        )
        for m, p in ((m, re.sub(r"/\d+", "/{issue_id}", p)) for m, p, _ in editor.seen)
    }
    exercised |= {(m, p) for m, p, _ in anonymous.seen}
    exercised = {
        (
            m,
            p.replace("/zpravodaj/", "/{slug}/")
            .replace("/neni/", "/{slug}/")
            .replace("/ostrava-psb/", "/{slug}/"),
        )
        for m, p in exercised
    }
    assert _documented_operations() <= exercised
