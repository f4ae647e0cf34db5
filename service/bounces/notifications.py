"""Providers' JSON notifications that reach the bounce address by mail.

Amazon SES publishes bounces, complaints, deliveries and engagement events
through SNS, and an SNS e-mail subscription delivers them as a plain-text
mail whose body is JSON (the SES event, or an SNS envelope with the event as
a string in "Message"). Only Bounce and Complaint mean anything here; the
rest (Delivery, Open, Click, Send, SubscriptionConfirmation...) is read as
"a notification, no failure", so a JSON fragment never becomes an address.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


@dataclass
class Notice:
    permanent: bool = True
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # address, status, diag
    complained: list[str] = field(default_factory=list)
    feedback_type: str = "abuse"


def read(text: str) -> Notice | None:
    """The notification in `text`, or None when it holds no JSON notification at all."""
    start = text.find("{")
    if start < 0 or start > 200:
        return None
    try:
        data, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        # SNS e-mail wraps long lines, breaking the JSON: read the fields alone.
        return _read_broken(text)
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Message"), str):  # the SNS envelope
        try:
            inner = json.loads(data["Message"])
        except ValueError:
            inner = None
        data = inner if isinstance(inner, dict) else data
    kind = str(data.get("notificationType") or data.get("eventType") or data.get("Type") or "")
    if not kind:
        return None
    notice = Notice()
    if kind == "Bounce" and isinstance(data.get("bounce"), dict):
        _read_bounce(data["bounce"], notice)
    elif kind == "Complaint" and isinstance(data.get("complaint"), dict):
        _read_complaint(data["complaint"], notice)
    return notice


_FIELD = r'\\*"{}\\*"\s*:\s*\\*"([^"\\]+)'


def _read_broken(text: str) -> Notice | None:
    """The kind, bounce type and addresses of a notification whose JSON does not parse."""
    text = re.sub(r"\s*\n\s*", "", text)
    kind = re.search(_FIELD.format("(?:notificationType|eventType)"), text)
    if kind is None:
        return None
    notice = Notice()
    addresses = re.findall(_FIELD.format("emailAddress"), text)
    if kind.group(1) == "Bounce":
        bounce_type = re.search(_FIELD.format("bounceType"), text)
        notice.permanent = bounce_type is not None and bounce_type.group(1) == "Permanent"
        statuses = re.findall(_FIELD.format("status"), text)
        notice.failed = [(a, statuses[0] if statuses else "", "") for a in addresses]
    elif kind.group(1) == "Complaint":
        notice.complained = addresses
    return notice


def _read_bounce(bounce: dict, notice: Notice) -> None:
    # SES: Permanent (hard unless the detail says otherwise), Transient, Undetermined.
    notice.permanent = bounce.get("bounceType") == "Permanent"
    for recipient in bounce.get("bouncedRecipients") or []:
        if isinstance(recipient, dict) and isinstance(recipient.get("emailAddress"), str):
            notice.failed.append(
                (
                    recipient["emailAddress"],
                    str(recipient.get("status") or ""),
                    str(recipient.get("diagnosticCode") or bounce.get("bounceSubType") or ""),
                )
            )


def _read_complaint(complaint: dict, notice: Notice) -> None:
    notice.feedback_type = str(complaint.get("complaintFeedbackType") or "abuse")
    for recipient in complaint.get("complainedRecipients") or []:
        if isinstance(recipient, dict) and isinstance(recipient.get("emailAddress"), str):
            notice.complained.append(recipient["emailAddress"])
