"""gunicorn's logger without gunicorn's access log (service/gunicorn_conf.py names it).

The app logs one line per request itself (`service.access`, logging_setup.py):
with its request id and the route, never the path, whose personal links carry
their tokens. gunicorn writes its own access line whenever a logging
configuration is given, whatever `accesslog` says, and the configuration
gunicorn_conf.py gives is what makes its other lines use the app's format;
so this class drops the access line instead. It also spares every request
the building of that line (issue 14).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


class ServiceLogger(Logger):
    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: the app's `service.access` line is the request's line."""
