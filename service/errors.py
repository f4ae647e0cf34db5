"""Czech error pages, or JSON for JSON clients: nothing a visitor does ends in a bare 500."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from .extensions import db

MESSAGES = {
    400: "Požadavek se nepodařilo přečíst.",
    404: "Stránka nebyla nalezena.",
    405: "Tato adresa tento druh požadavku nepřijímá.",
    413: "Požadavek je příliš velký.",
    415: "Nepodporovaný formát požadavku.",
    429: "Příliš mnoho pokusů. Zkuste to prosím znovu za chvíli.",
    500: "Něco se pokazilo na naší straně. Zkuste to prosím znovu později.",
}


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
    if request.method != "POST":
        return None
    try:
        return request.form.get(name)
    except HTTPException:
        return None


def embedded_form_post() -> bool:
    """Whether this is the embedded form posting (its answers stay frameable)."""
    return posted_field("form") == "embed"


def error_page(status: int, message: str) -> str:
    """The Czech error page; inside the embedded form's frame, in the frame's layout."""
    embedded = embedded_form_post()
    template = "public/error_embed.html" if embedded else "public/error.html"
    return render_template(template, status=status, message=message)


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = MESSAGES.get(status, error.description or MESSAGES[500])
        if wants_json():
            response = jsonify(errors={"request": message})
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
            return jsonify(errors={"request": MESSAGES[500]}), 500
        return error_page(500, MESSAGES[500]), 500
