"""Unbound Flask extensions of the web app only, bound in `create_app`.

Not in extensions.py, which every worker imports: Flask-Limiter (with limits and
its storage drivers), Flask-Login and Flask-WTF (with WTForms) weigh about 3 MB of
Python objects, and a worker's app (`create_worker_app`) never serves a request.
"""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

# Limits are declared on the views; storage and on/off come from the config.
limiter = Limiter(key_func=get_remote_address)
# Admin sessions; the API authenticates with bearer tokens instead.
login_manager = LoginManager()
# Checked on the admin blueprint only: public forms and the one-click
# endpoint are protected by rate limits, the honeypot and double opt-in.
csrf = CSRFProtect()
