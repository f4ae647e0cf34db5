"""Every answer of the API is JSON, errors included: `{"error": "<message>", "code": "<code>"}`.

The message is in the request's language (Czech unless `?lang=en` or
Accept-Language asks for English); the code is stable and machine-readable
(`not_found`, `rate_limited`…: `service.errors.CODES`). Validation errors (422)
add `"errors": {field: message}` and `"codes": {field: code}`. The app-wide
handlers in service/errors.py answer JSON too, but in the shape of the public
forms (`{"errors": {"request": …}}`); the API promises one shape in its
OpenAPI document, so its blueprint answers its own errors. Paths under
/api/v1 that match no route never reach the blueprint (Flask only knows the
blueprint once a rule matched), so an app-wide hook (`init_app`, registered
first by `create_app`) answers those 404/405 in the API's shape too.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..errors import MESSAGES, code_for
from ..extensions import db
from ..issues.sending import IssueStateError
from ..request_values import bound
from ..subscriptions.forms import ERROR_CODES
from .blueprint import bp

API_MESSAGES = {
    **MESSAGES,
    401: _l("Chybí platný přístupový token."),
    404: _l("Tato adresa API neexistuje."),
    415: _l("Tělo požadavku musí být JSON (Content-Type: application/json)."),
}


# The fields a 422 of the API can name; each one's code is `invalid_<field>` (or a known
# one, `ERROR_CODES`), whatever the language of the message. The OpenAPI document lists
# them, so a test answer with a code it does not list fails its validation.
MEETING_FIELDS = ("start", "end", "location", "online_url", "agenda", "rrule", "repeat")
ERROR_FIELDS = (
    "subject",
    "body",
    "preheader",
    "at",
    "file",
    "meeting",
    *MEETING_FIELDS,
    *(f"meeting.{name}" for name in MEETING_FIELDS),
)
FIELD_CODES = sorted({*(f"invalid_{name}" for name in ERROR_FIELDS), *ERROR_CODES})


def field_codes(errors: dict[str, str]) -> dict[str, str]:
    """A stable code per field: a known message's own (`invalid_email`), else `invalid_<field>`."""
    known = {str(message): code for code, message in ERROR_CODES.items()}
    return {name: known.get(str(text), f"invalid_{name}") for name, text in errors.items()}


class ApiError(Exception):
    """An error answer of the API: status, message (in the request's language), optional
    field errors and headers."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        text = str(message or API_MESSAGES.get(status) or MESSAGES[500])
        super().__init__(text)
        self.status = status
        self.message = text
        self.errors = errors
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    errors: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": str(message), "code": code_for(status)}
    if errors is not None:
        body["errors"] = {name: str(text) for name, text in errors.items()}
        body["codes"] = field_codes(errors)
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _kept_headers(error: HTTPException) -> dict[str, str]:
    """Allow, Retry-After and the like; the body is ours, so not its Content-Type."""
    return {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }


def _http_error_response(error: HTTPException) -> Response:
    status = error.code or 500
    return error_response(
        status, str(API_MESSAGES.get(status) or MESSAGES[500]), headers=_kept_headers(error)
    )


@bp.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    db.session.rollback()
    return error_response(error.status, error.message, error.errors, error.headers)


@bp.errorhandler(IssueStateError)
def _state_error(error: IssueStateError) -> Response:
    # The transition was refused before anything was written; drop any half-made change.
    db.session.rollback()
    return error_response(409, str(error))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    """Aborts inside the blueprint (413, the rate limiter's 429, the input guard's 400)."""
    return _http_error_response(error)


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    current_app.logger.exception("unhandled API error on %s %s", request.method, request.path)
    db.session.rollback()
    return error_response(500, str(MESSAGES[500]))


def _in_api() -> bool:
    prefix = bp.url_prefix or ""
    return request.path == prefix or request.path.startswith(prefix + "/")


def _unmatched_api_route() -> Response | None:
    """404/405 in the API's shape for /api/v1 paths that match no route or no method."""
    error = bound(request).routing_exception
    if isinstance(error, NotFound | MethodNotAllowed) and _in_api():
        return _http_error_response(error)
    return None


def init_app(app: Flask) -> None:
    """Answer unknown /api/v1 paths and methods in the API's shape.

    `create_app` registers this before every other request hook, so nothing
    else (e.g. the input guard) answers such a request in the HTML or form
    shape before it.
    """
    app.before_request(_unmatched_api_route)
