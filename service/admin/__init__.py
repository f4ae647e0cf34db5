"""The editors' Czech admin UI under /admin: sign-in, dashboard, subscribers, issues.

Every view needs a signed-in account (`login_required` on the blueprint), and
every POST carries a CSRF token (Flask-WTF), checked here for the whole
blueprint so no form can forget it.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Importing the view modules registers their routes on `bp`.
from . import auth, dashboard, groups, issues, subscribers, users  # noqa: E402,F401
