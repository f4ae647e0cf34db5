"""The SMTP transport configured for the running app."""

from __future__ import annotations

from flask import current_app

from service.deliverability.dkim import signer_from_config
from service.jobs import redis_connection
from service.smtp_settings import SmtpSettings

from .smtp import SmtpTransport


def app_transport(kind: str = "other") -> SmtpTransport:
    """The transport every worker sends through; it DKIM-signs when DKIM_* are set.

    `kind` is what the metrics count its mails as (issue, confirmation…).
    """
    config = current_app.config
    settings = SmtpSettings.from_url(
        config["SMTP_URL"],
        timeout=config["SMTP_TIMEOUT"],
        data_timeout=config["SMTP_DATA_TIMEOUT"],
    )
    return SmtpTransport(
        settings,
        capability_store=redis_connection(),
        signer=signer_from_config(config),
        kind=kind,
    )
