"""Local development: the one-command service, its mail catcher and private Redis.

The tests use the same catcher and Redis starter, so what a developer clicks
through is what the suite checks.
"""
