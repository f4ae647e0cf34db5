"""Error pages in the request's language, or JSON for JSON clients: nothing ends in a bare 500.

Admin pages' errors (a coordinator opening another group: 403) render in the
admin's layout with its navigation and a way back; public ones in the public
layout; the embedded form's in the frame's layout.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from .extensions import db
from .request_values import bound, first

MESSAGES = {
    400: _l("Požadavek se nepodařilo přečíst."),
    401: _l("Pro tuto stránku se musíte přihlásit."),
    403: _l("K této stránce nemáte přístup."),
    404: _l("Stránka nebyla nalezena."),
    405: _l("Tato adresa tento druh požadavku nepřijímá."),
    409: _l("Tuto akci nyní nelze provést."),
    410: _l("Tato stránka už neexistuje."),
    413: _l("Požadavek je příliš velký."),
    415: _l("Nepodporovaný formát požadavku."),
    422: _l("Některé údaje nejsou v pořádku."),
    429: _l("Příliš mnoho pokusů. Zkuste to prosím znovu za chvíli."),
    500: _l("Něco se pokazilo na naší straně. Zkuste to prosím znovu později."),
    503: _l("Služba je dočasně nedostupná. Zkuste to prosím znovu později."),
}


# Stable machine-readable codes beside the translated messages of JSON answers.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    """The stable code of an HTTP status in JSON error answers (`rate_limited`…)."""
    return CODES.get(status) or CODES[400 if 400 <= status < 500 else 500]


def message_for(status: int) -> str:
    """The translated message of an HTTP status; never Werkzeug's English description."""
    return str(MESSAGES.get(status) or MESSAGES[400 if 400 <= status < 500 else 500])


def wants_json() -> bool:
    if request.is_json or request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def posted_field(name: str) -> str | None:
    """A form field, or None when the body is unreadable (too large, malformed)."""
    current = bound(request)  # read once, not through the proxy twice
    if current.method != "POST":
        return None
    try:
        return first(current.form, name)
    except HTTPException:
        return None


def embedded_form_post() -> bool:
    """Whether this is the embedded form posting (its answers stay frameable)."""
    return posted_field("form") == "embed"


def in_admin() -> bool:
    """Whether the request is for an admin page (its errors keep the admin's frame)."""
    return request.path == "/admin" or request.path.startswith("/admin/")


def error_page(status: int, message: str) -> str:
    """The error page: the admin's, the embedded form's frame, or the public one."""
    if in_admin():
        template = "admin/error.html"
    elif embedded_form_post():
        template = "public/error_embed.html"
    else:
        template = "public/error.html"
    return render_template(template, status=status, message=message)


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = message_for(status)
        if wants_json():
            response = jsonify(errors={"request": message}, codes={"request": code_for(status)})
        else:
            response = app.make_response(error_page(status, message))
        response.status_code = status
        # Keep Retry-After and the like (e.g. from the rate limiter).
        for name, value in error.get_headers():
            if name.lower() not in {"content-type", "content-length"}:
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        if wants_json():
            return jsonify(
                errors={"request": message_for(500)}, codes={"request": code_for(500)}
            ), 500
        return error_page(500, message_for(500)), 500
