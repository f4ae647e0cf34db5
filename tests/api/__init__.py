"""A client for the API tests that checks every answer against the OpenAPI document.

Each call is validated with openapi-core: the response of every route, success
or error, must be what /api/v1/openapi.json says; the request too when the
test expects success (so the document describes what the API accepts). An
answer on a path or method the document does not have (404/405 of unknown
routes) must still be the documented Error object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_schema_validator import OAS31Validator
from werkzeug.test import EnvironBuilder

from service.api.openapi import DOCUMENT

SPEC = OpenAPI.from_dict(DOCUMENT)
# The Error schema alone, with the document's components for its references.
_ERROR_SCHEMA = {"$ref": "#/components/schemas/Error", "components": DOCUMENT["components"]}
ERROR_VALIDATOR = OAS31Validator(_ERROR_SCHEMA)


@dataclass
class Api:
    """Calls /api/v1 as one account (or none) and validates each exchange."""

    client: Any
    token: str | None = None
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ):
        all_headers = {}
        if self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        kwargs: dict[str, Any] = {"headers": all_headers}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        if content_type is not None:
            kwargs["content_type"] = content_type
        # A twin of the request for openapi-core: the app consumes the original's body.
        twin = EnvironBuilder(path=path, method=method, **kwargs).get_request()
        response = self.client.open(path, method=method, **kwargs)
        check_exchange(twin, response)
        self.seen.append((method, path, response.status_code))
        return response

    def get(self, path: str, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs):
        return self.call("POST", path, json, **kwargs)


def check_exchange(request, response) -> None:
    """Fail unless the response is JSON as documented (and a successful request too)."""
    assert response.mimetype == "application/json", (response.status_code, response.data[:200])
    try:
        SPEC.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound):
        assert response.status_code in (404, 405), (request.method, request.path)
        ERROR_VALIDATOR.validate(response.get_json())
        return
    if response.status_code < 300:
        SPEC.validate_request(WerkzeugOpenAPIRequest(request))
