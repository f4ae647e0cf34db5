"""gunicorn picks this file up when started in the checkout; the settings live in the package.

Production (an installed wheel) names the module instead:
`gunicorn --config python:service.gunicorn_conf`.
"""

from service.gunicorn_conf import *  # noqa: F403
