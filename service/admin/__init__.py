"""The editors' Czech admin UI under /admin: sign-in, dashboard, subscribers, issues.

Every view needs a signed-in account (`login_required` on the blueprint), and
every POST carries a CSRF token (Flask-WTF), checked for the whole
blueprint (auth.py) so no form can forget it. `routes.py` gathers the view
modules on the blueprint (`blueprint.py`).
"""
