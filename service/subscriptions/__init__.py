"""Public subscription flow: the form, double opt-in, unsubscribe, preferences."""

from flask import Blueprint

bp = Blueprint("subscriptions", __name__)

from . import routes  # noqa: E402,F401  (registers the views on bp)
