"""The OpenAPI 3.1 document of the editors' API, served at /api/v1/openapi.json.

Kept as Python data next to the views it describes; tests/api validates the
document and every real answer of the API (success and error) against it.
"""

from __future__ import annotations

from typing import Any

from ..errors import CODES
from ..models import SUBSCRIPTION_STATUSES, IssueStatus, MeetingMethod
from .errors import FIELD_CODES

_ISSUE_STATUSES = [s.value for s in IssueStatus]


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _errors(*statuses: int) -> dict[str, Any]:
    """References to the shared error responses, by status."""
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "Conflict",
        413: "TooLarge",
        415: "UnsupportedMediaType",
        422: "ValidationFailed",
        429: "TooManyRequests",
        500: "ServerError",
    }
    return {str(status): _ref("responses", names[status]) for status in statuses}


# Every authenticated route can answer these (400: the input guard refuses NUL,
# lone surrogates and broken UTF-8 in any part of a request, headers included).
# A method a path does not take is a 405 Error with `Allow`
# (components/responses/MethodNotAllowed); it has no operation to be listed under.
_COMMON = (400, 401, 404, 429, 500)
_WITH_BODY = (400, 413, 415)

_ISSUE_ID = {
    "name": "issue_id",
    "in": "path",
    "required": True,
    "description": "Id of the issue, as returned when it was created.",
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}


_RECURRENCE_ID = {
    "name": "recurrence_id",
    "in": "path",
    "required": True,
    "description": (
        "A date of the series: its RECURRENCE-ID in UTC (ISO 8601 with an offset) or "
        "its `key` from the meeting's `dates`."
    ),
    "schema": {"type": "string", "maxLength": 40},
    "examples": {"iso": {"value": "2027-02-09T08:30:00Z"}, "key": {"value": "1801816200"}},
}

_MEETING_ID = {
    "name": "meeting_id",
    "in": "path",
    "required": True,
    "description": "Id of the meeting (`meeting.id` of its invitation).",
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}


def _state_change_path(summary: str, description: str, operation_id: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "tags": ["issues"],
            "parameters": [_ISSUE_ID],
            "responses": {
                "200": _json(_ref("schemas", "Issue"), "The issue after the change."),
                **_errors(409, *_COMMON),
            },
        }
    }


def _error_response(description: str, **headers: Any) -> dict[str, Any]:
    response = _json(_ref("schemas", "Error"), description)
    if headers:
        response["headers"] = headers
    return response


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Zpravodaj editors' API",
        "version": "1.0.0",
        "description": (
            "Compose and send newsletter issues and working-group announcements. "
            "Authenticate with `Authorization: Bearer <token>`; a token is made with "
            "`zpravodaj tokens create EMAIL`. Every answer is JSON; errors are "
            '`{"error": "<message>", "code": "<code>"}` (the message in Czech, or in English '
            "with `?lang=en` or `Accept-Language: en`; the code stable, one of the `Error` "
            'schema\'s, the same in every language), and 422 adds `"errors": {field: message}` '
            'and `"codes": {field: code}` (`invalid_<field>`, e.g. `invalid_subject` or '
            "`invalid_meeting.start`; the `Error` schema lists them all). "
            "Times are ISO 8601; the service answers in UTC."
        ),
    },
    "security": [{"bearerAuth": []}],
    "tags": [
        {"name": "lists", "description": "Newsletters and working groups."},
        {"name": "issues", "description": "Issues (announcements on group lists) and sending."},
        {"name": "meetings", "description": "Meeting invitations of working groups."},
    ],
    "paths": {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(400, 429, 500),
                },
            }
        },
        "/api/v1/lists": {
            "get": {
                "operationId": "listLists",
                "summary": "Lists the account manages, with subscriber counts",
                "description": (
                    "Administrators and editors see every list; a coordinator sees "
                    "only their own working groups."
                ),
                "tags": ["lists"],
                "responses": {
                    "200": _json(_ref("schemas", "ListCollection"), "The lists."),
                    **_errors(*_COMMON),
                },
            }
        },
        "/api/v1/lists/{slug}/issues": {
            "post": {
                "operationId": "createIssue",
                "summary": "Create a draft issue on a list",
                "description": (
                    "The body is Markdown. On a working group's list a `meeting` makes "
                    "the draft an invitation: every mail of it carries an iCalendar "
                    "invitation (`text/calendar; method=REQUEST`) and shows the date, "
                    "place and agenda. Newsletters refuse `meeting` with 422."
                ),
                "tags": ["issues"],
                "parameters": [
                    {
                        "name": "slug",
                        "in": "path",
                        "required": True,
                        "description": "The list's slug, e.g. `zpravodaj`.",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("schemas", "IssueCreate")}},
                },
                "responses": {
                    "201": _json(
                        _ref("schemas", "Issue"),
                        "The draft was created.",
                        headers={
                            "Location": {
                                "description": "Where to read the issue.",
                                "schema": {"type": "string"},
                            }
                        },
                    ),
                    **_errors(*_WITH_BODY, 422, *_COMMON),
                },
            }
        },
        "/api/v1/issues/{issue_id}": {
            "get": {
                "operationId": "getIssue",
                "summary": "An issue's state and delivery counts",
                "tags": ["issues"],
                "parameters": [_ISSUE_ID],
                "responses": {
                    "200": _json(_ref("schemas", "Issue"), "The issue."),
                    **_errors(*_COMMON),
                },
            }
        },
        "/api/v1/issues/{issue_id}/send": {
            "post": {
                "operationId": "sendIssue",
                "summary": "Send a draft now, or schedule it",
                "description": (
                    "Without `at` (or with no body) delivery starts at once to the "
                    "list's confirmed subscribers at this moment. With `at` the issue "
                    "is scheduled; a time without an offset is read in Europe/Prague. "
                    "A scheduled issue may be rescheduled or sent now."
                ),
                "tags": ["issues"],
                "parameters": [_ISSUE_ID],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("schemas", "SendRequest")}},
                },
                "responses": {
                    "202": _json(_ref("schemas", "Issue"), "Sending started or scheduled."),
                    **_errors(*_WITH_BODY, 409, 422, *_COMMON),
                },
            }
        },
        "/api/v1/issues/{issue_id}/attachments": {
            "post": {
                "operationId": "addAttachment",
                "summary": "Attach a document to a draft",
                "description": (
                    "PDF, DOCX, ODT or XLSX (checked by extension and content), at most "
                    "ATTACHMENT_MAX_BYTES (10 MB by default) each and twice that per issue. "
                    "Stored once and sent with every mail of the issue."
                ),
                "tags": ["issues"],
                "parameters": [_ISSUE_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {
                                        "type": "string",
                                        "contentMediaType": ("application/octet-stream"),
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("schemas", "Attachment"), "The attachment was added."),
                    **_errors(*_WITH_BODY, 409, 422, *_COMMON),
                },
            }
        },
        "/api/v1/meetings/{meeting_id}/update": {
            "post": {
                "operationId": "updateMeeting",
                "summary": "Change a meeting's time or place",
                "description": (
                    "Changes the meeting (same UID, SEQUENCE + 1) and creates a draft "
                    "update announcement; send it with `/issues/{id}/send`."
                ),
                "tags": ["meetings"],
                "parameters": [_MEETING_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("schemas", "MeetingInput")}},
                },
                "responses": {
                    "201": _json(_ref("schemas", "Issue"), "The draft update."),
                    **_errors(*_WITH_BODY, 409, 422, *_COMMON),
                },
            }
        },
        "/api/v1/meetings/{meeting_id}/cancel": {
            "post": {
                "operationId": "cancelMeeting",
                "summary": "Cancel a meeting",
                "description": (
                    "Marks the meeting cancelled and sends the group a cancellation "
                    "(`METHOD:CANCEL`) at once; its reminder is not sent."
                ),
                "tags": ["meetings"],
                "parameters": [_MEETING_ID],
                "responses": {
                    "202": _json(_ref("schemas", "Issue"), "The cancellation is being sent."),
                    **_errors(409, *_COMMON),
                },
            }
        },
        "/api/v1/meetings/{meeting_id}/dates/{recurrence_id}/update": {
            "post": {
                "operationId": "updateMeetingDate",
                "summary": "Move one date of a recurring meeting",
                "description": (
                    "Changes that date alone (an exception with its RECURRENCE-ID and "
                    "its own SEQUENCE; the series and answers to it stay) and creates "
                    "a draft update about it; send it with `/issues/{id}/send`."
                ),
                "tags": ["meetings"],
                "parameters": [_MEETING_ID, _RECURRENCE_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("schemas", "MeetingInput")}},
                },
                "responses": {
                    "201": _json(_ref("schemas", "Issue"), "The draft update."),
                    **_errors(*_WITH_BODY, 409, 422, *_COMMON),
                },
            }
        },
        "/api/v1/meetings/{meeting_id}/dates/{recurrence_id}/cancel": {
            "post": {
                "operationId": "cancelMeetingDate",
                "summary": "Cancel one date of a recurring meeting",
                "description": (
                    "Sends the group `METHOD:CANCEL` with that date's RECURRENCE-ID at "
                    "once; the other dates stand."
                ),
                "tags": ["meetings"],
                "parameters": [_MEETING_ID, _RECURRENCE_ID],
                "responses": {
                    "202": _json(_ref("schemas", "Issue"), "The cancellation is being sent."),
                    **_errors(409, *_COMMON),
                },
            }
        },
        "/api/v1/meetings/{meeting_id}/dates/{recurrence_id}/cancel-following": {
            "post": {
                "operationId": "cancelMeetingFollowing",
                "summary": "Cancel a date of a recurring meeting and all after it",
                "description": (
                    "Ends the series' rule before that date (UNTIL, SEQUENCE + 1) and "
                    "sends the shortened series to the group at once."
                ),
                "tags": ["meetings"],
                "parameters": [_MEETING_ID, _RECURRENCE_ID],
                "responses": {
                    "202": _json(_ref("schemas", "Issue"), "The change is being sent."),
                    **_errors(409, *_COMMON),
                },
            }
        },
        "/api/v1/meetings/{meeting_id}/dates/{recurrence_id}/move-following": {
            "post": {
                "operationId": "moveMeetingFollowing",
                "summary": "Move a date of a recurring meeting and all after it",
                "description": (
                    'Splits the series, as calendar apps do for "this and following '
                    'events": the series ends before that date (UNTIL, SEQUENCE + 1) and '
                    "a new series with its own UID starts at the date's new `start` with "
                    "the same rhythm (a weekday rhythm follows the new day, e.g. the "
                    "second Tuesday becomes the second Thursday), or with `rrule` when "
                    "given. Fields left out keep the series' place, link and agenda. "
                    "Members' answers to the series carry over; answers to single dates, "
                    "and dates moved or cancelled alone, carry over where the new series "
                    "meets on the same day. Both mails go to the group at once."
                ),
                "tags": ["meetings"],
                "parameters": [_MEETING_ID, _RECURRENCE_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("schemas", "MeetingInput")}},
                },
                "responses": {
                    "202": _json(
                        _ref("schemas", "SeriesSplit"),
                        "Both mails are being sent.",
                        headers={
                            "Location": {
                                "schema": {"type": "string"},
                                "description": "The new series' invitation.",
                            }
                        },
                    ),
                    **_errors(*_WITH_BODY, 409, 422, *_COMMON),
                },
            }
        },
        "/api/v1/issues/{issue_id}/pause": _state_change_path(
            "Pause sending",
            "Stops after the messages in flight; resume continues where it stopped.",
            "pauseIssue",
        ),
        "/api/v1/issues/{issue_id}/resume": _state_change_path(
            "Resume a paused issue", "Sending continues with those not reached yet.", "resumeIssue"
        ),
        "/api/v1/issues/{issue_id}/cancel": _state_change_path(
            "Cancel an issue",
            "Nobody else gets it; what was sent stays sent. Not possible once sent.",
            "cancelIssue",
        ),
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `zpravodaj tokens create EMAIL`.",
            }
        },
        "schemas": {
            "SubscriberCounts": {
                "type": "object",
                "required": list(SUBSCRIPTION_STATUSES),
                "properties": {
                    name: {"type": "integer", "minimum": 0} for name in SUBSCRIPTION_STATUSES
                },
                "additionalProperties": False,
            },
            "MailingList": {
                "type": "object",
                "required": ["slug", "name", "kind", "counts"],
                "properties": {
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "kind": {"type": "string", "enum": ["newsletter", "group"]},
                    "counts": _ref("schemas", "SubscriberCounts"),
                },
                "additionalProperties": False,
            },
            "ListCollection": {
                "type": "object",
                "required": ["lists"],
                "properties": {"lists": {"type": "array", "items": _ref("schemas", "MailingList")}},
                "additionalProperties": False,
            },
            "IssueCreate": {
                "type": "object",
                "required": ["subject", "body"],
                "properties": {
                    "subject": {"type": "string", "minLength": 1, "maxLength": 200},
                    "body": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200_000,
                        "description": "Markdown.",
                    },
                    "preheader": {
                        "type": ["string", "null"],
                        "maxLength": 200,
                        "description": "The line mail clients show after the subject.",
                    },
                    "meeting": {
                        "oneOf": [_ref("schemas", "MeetingInput"), {"type": "null"}],
                        "description": "Working groups only: makes the draft an invitation.",
                    },
                },
            },
            "MeetingInput": {
                "type": "object",
                "required": ["start", "end"],
                "description": "`location` or `online_url` (or both) is required.",
                "properties": {
                    "start": {
                        "type": "string",
                        "description": "ISO 8601; without an offset read as Europe/Prague.",
                        "examples": ["2026-12-10T09:30"],
                    },
                    "end": {"type": "string", "description": "ISO 8601, after `start`."},
                    "location": {"type": ["string", "null"], "maxLength": 300},
                    "online_url": {
                        "type": ["string", "null"],
                        "maxLength": 500,
                        "description": "An http(s) link to join online.",
                    },
                    "agenda": {
                        "type": ["string", "null"],
                        "maxLength": 20_000,
                        "description": "Markdown.",
                    },
                    "rrule": {
                        "type": ["string", "null"],
                        "maxLength": 200,
                        "description": (
                            "A recurring meeting (one series, one UID): an RFC 5545 RRULE "
                            "from `start`, at most daily, e.g. FREQ=MONTHLY;BYDAY=2TU."
                        ),
                        "examples": ["FREQ=MONTHLY;BYDAY=2TU", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH"],
                    },
                },
            },
            "Meeting": {
                "type": "object",
                "required": [
                    "id",
                    "uid",
                    "start",
                    "end",
                    "location",
                    "online_url",
                    "agenda",
                    "sequence",
                    "cancelled",
                    "ics_url",
                ],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "uid": {"type": "string", "description": "The iCalendar UID, stable."},
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                    "location": {"type": "string"},
                    "online_url": {"type": ["string", "null"]},
                    "agenda": {"type": ["string", "null"], "description": "Markdown."},
                    "sequence": {"type": "integer", "minimum": 0},
                    "cancelled": {"type": "boolean"},
                    "ics_url": {"type": "string", "description": "Public .ics download."},
                    "rrule": {
                        "type": ["string", "null"],
                        "description": "The series' RRULE; null for a single meeting.",
                    },
                    "rhythm": {
                        "type": ["string", "null"],
                        "description": (
                            "The RRULE in words, in the request's language (každé druhé "
                            "úterý v měsíci v 9:30; on the second Tuesday of every month at "
                            "9:30 AM)."
                        ),
                    },
                    "dates": {
                        "type": "array",
                        "description": "A series' last few dates held and next few; [] else.",
                        "items": _ref("schemas", "MeetingDate"),
                    },
                },
                "additionalProperties": False,
            },
            "MeetingDate": {
                "type": "object",
                "required": ["recurrence_id", "key", "start", "end", "changed", "cancelled"],
                "properties": {
                    "recurrence_id": {
                        "type": "string",
                        "format": "date-time",
                        "description": "The start the rule gives the date; names it for good.",
                    },
                    "key": {"type": "string", "description": "The same as a Unix time."},
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                    "location": {"type": "string"},
                    "changed": {"type": "boolean", "description": "Moved or changed alone."},
                    "cancelled": {"type": "boolean"},
                    "sequence": {"type": "integer", "minimum": 0},
                },
                "additionalProperties": False,
            },
            "Attachment": {
                "type": "object",
                "required": ["id", "filename", "content_type", "size", "sha256"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "filename": {"type": "string"},
                    "content_type": {"type": "string"},
                    "size": {"type": "integer", "minimum": 1},
                    "sha256": {"type": "string"},
                },
                "additionalProperties": False,
            },
            "SendRequest": {
                "type": "object",
                "properties": {
                    "at": {
                        "type": ["string", "null"],
                        "description": (
                            "When to send, ISO 8601, in the future and at most a year ahead; "
                            "without an offset read as Europe/Prague. Absent or null: now."
                        ),
                        "examples": ["2026-12-10T09:00", "2026-12-10T08:00:00Z"],
                    }
                },
            },
            "DeliveryCounts": {
                "type": "object",
                "required": ["total", "sent", "failed", "pending", "skipped", "cancelled"],
                "properties": {
                    "total": {"type": "integer", "minimum": 0, "description": "Recipients."},
                    "sent": {"type": "integer", "minimum": 0},
                    "failed": {"type": "integer", "minimum": 0, "description": "Refused for good."},
                    "pending": {"type": "integer", "minimum": 0, "description": "Not yet sent."},
                    "skipped": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Unsubscribed, bounced or erased before their turn.",
                    },
                    "cancelled": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Not sent because the issue was cancelled.",
                    },
                },
                "additionalProperties": False,
            },
            "Issue": {
                "type": "object",
                "required": [
                    "id",
                    "list",
                    "number",
                    "subject",
                    "status",
                    "scheduled_at",
                    "started_at",
                    "finished_at",
                    "counts",
                ],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "list": {"type": "string", "description": "The list's slug."},
                    "number": {
                        "type": ["integer", "null"],
                        "description": "Number within the list, given when sending starts.",
                    },
                    "subject": {"type": "string"},
                    "status": {"type": "string", "enum": _ISSUE_STATUSES},
                    "scheduled_at": {"type": ["string", "null"], "format": "date-time"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "counts": _ref("schemas", "DeliveryCounts"),
                    "meeting": {
                        "oneOf": [_ref("schemas", "Meeting"), {"type": "null"}],
                        "description": "The meeting this announcement is about.",
                    },
                    "meeting_method": {
                        "type": ["string", "null"],
                        "enum": [*(m.value for m in MeetingMethod), None],
                        "description": "Invitation/update/reminder, or cancellation.",
                    },
                    "meeting_date": {
                        "type": ["string", "null"],
                        "format": "date-time",
                        "description": (
                            "For an announcement about one date of a series (its change, "
                            "cancellation or reminder): that date's RECURRENCE-ID."
                        ),
                    },
                    "attachments": {"type": "array", "items": _ref("schemas", "Attachment")},
                    "attendance": {
                        "oneOf": [_ref("schemas", "Attendance"), {"type": "null"}],
                        "description": "Members' answers to the meeting; null without a meeting.",
                    },
                },
                "additionalProperties": False,
            },
            "SeriesSplit": {
                "type": "object",
                "description": "A series moved from one date on, split in two.",
                "required": ["ended", "invitation"],
                "properties": {
                    "ended": {
                        "allOf": [_ref("schemas", "Issue")],
                        "description": "The series so far, ended before the date (a REQUEST).",
                    },
                    "invitation": {
                        "allOf": [_ref("schemas", "Issue")],
                        "description": "The new series' invitation; its `meeting` is the new one.",
                    },
                },
                "additionalProperties": False,
            },
            "Attendance": {
                "type": "object",
                "description": (
                    "The group's members by their answer to the meeting (RSVP page or "
                    "calendar reply); needs_action: no answer yet."
                ),
                "required": ["accepted", "tentative", "declined", "needs_action"],
                "properties": {
                    "accepted": {"type": "integer", "minimum": 0},
                    "tentative": {"type": "integer", "minimum": 0},
                    "declined": {"type": "integer", "minimum": 0},
                    "needs_action": {"type": "integer", "minimum": 0},
                },
                "additionalProperties": False,
            },
            "Error": {
                "type": "object",
                "required": ["error", "code"],
                "properties": {
                    "error": {
                        "type": "string",
                        "description": (
                            "What went wrong, in the request's language (Czech by default, "
                            "English with `?lang=en` or `Accept-Language: en`)."
                        ),
                    },
                    "code": {
                        "type": "string",
                        "enum": sorted(set(CODES.values())),
                        "description": "What went wrong, stable and machine-readable.",
                    },
                    "errors": {
                        "type": "object",
                        "description": "Per field, what is wrong with it (422 only).",
                        "additionalProperties": {"type": "string"},
                    },
                    "codes": {
                        "type": "object",
                        "description": (
                            "Per field, a stable code, the same in every language: "
                            "`invalid_<field>` (422 only)."
                        ),
                        "additionalProperties": {"type": "string", "enum": FIELD_CODES},
                    },
                },
                "additionalProperties": False,
            },
            "ValidationError": {
                "allOf": [
                    _ref("schemas", "Error"),
                    {
                        "required": ["errors"],
                        "properties": {"errors": {"minProperties": 1}},
                    },
                ]
            },
        },
        "responses": {
            "BadRequest": _error_response(
                "The body is not a JSON object, or is unreadable; or a part of the request "
                "(path, query, headers, body) holds a NUL, a lone surrogate or broken UTF-8."
            ),
            "Unauthorized": _error_response(
                "No token, or an unknown or revoked one.",
                **{
                    "WWW-Authenticate": {
                        "schema": {"type": "string"},
                        "description": '`Bearer realm="zpravodaj"`.',
                    }
                },
            ),
            "NotFound": _error_response(
                "No such list, issue, meeting or route, or one the account may not see: "
                "both answer alike, so ids cannot be probed for existence."
            ),
            "MethodNotAllowed": _error_response(
                "The route does not take this method.",
                Allow={"schema": {"type": "string"}, "description": "The methods it takes."},
            ),
            "Conflict": _error_response("The issue's state does not allow this now."),
            "TooLarge": _error_response("The body is larger than the service accepts."),
            "UnsupportedMediaType": _error_response("The body is not `application/json`."),
            "ValidationFailed": _json(
                _ref("schemas", "ValidationError"), "Some fields are not acceptable."
            ),
            "TooManyRequests": _error_response(
                "Too many requests with this token; try again later.",
                **{
                    "Retry-After": {
                        "schema": {"type": "string"},
                        "description": "Seconds to wait.",
                    }
                },
            ),
            "ServerError": _error_response("An error on the service's side."),
        },
    },
}
