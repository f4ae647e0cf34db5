"""The editors' JSON API under /api/v1 (DESIGN.md §5.5), with bearer tokens.

`routes.py` holds the views (importing it registers `auth.py` and `errors.py` on the
blueprint too); `blueprint.py` the blueprint itself.
"""
