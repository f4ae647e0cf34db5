"""The web app's URL rules as data: the worker's app builds its URL map from them.

Mails link to pages (a confirmation, an unsubscribe, the archive), and their links
are built from the app's URL map (links.py). Importing every page's views for their
rules would load the web's forms, rate limiter and admin sign-in into each worker and
work horse (issue 14); `create_worker_app` adds these rules instead, build-only.

The table is the web app's map in production (METRICS on, no DEV_OUTBOX_DIR), in its
order. tests/test_worker_app.py fails when a route changes and prints the new table:
paste it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.routing import Rule

# (rule, endpoint, methods, defaults), as `rules_of(create_app())` gives them.
RuleData = tuple[str, str, tuple[str, ...], Mapping[str, Any] | None]

RULES: tuple[RuleData, ...] = (
    ("/static/<path:filename>", "static", ("GET", "HEAD", "OPTIONS"), None),
    ("/", "index", ("GET", "HEAD", "OPTIONS"), None),
    ("/subscribe", "subscriptions.subscribe_page", ("GET", "HEAD", "OPTIONS"), {}),
    ("/embed/subscribe", "subscriptions.subscribe_embed", ("GET", "HEAD", "OPTIONS"), {}),
    ("/subscribe", "subscriptions.subscribe", ("OPTIONS", "POST"), {}),
    ("/confirm/<token>", "subscriptions.confirm", ("GET", "HEAD", "OPTIONS"), {}),
    ("/confirm/<token>", "subscriptions.confirm_post", ("OPTIONS", "POST"), {}),
    ("/confirm/<token>/resend", "subscriptions.confirm_resend", ("OPTIONS", "POST"), {}),
    ("/unsubscribe/<token>", "subscriptions.unsubscribe", ("GET", "HEAD", "OPTIONS"), {}),
    ("/unsubscribe/<token>", "subscriptions.unsubscribe_post", ("OPTIONS", "POST"), {}),
    ("/preferences/<token>", "subscriptions.preferences", ("GET", "HEAD", "OPTIONS"), {}),
    ("/preferences/<token>", "subscriptions.preferences_post", ("OPTIONS", "POST"), {}),
    (
        "/preferences/<token>/privacy-link",
        "subscriptions.preferences_privacy_link",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/preferences/<token>/export",
        "subscriptions.preferences_export",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/preferences/<token>/export",
        "subscriptions.preferences_export_post",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/preferences/<token>/erase",
        "subscriptions.preferences_erase",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    ("/preferences/<token>/erase", "subscriptions.preferences_erase_post", ("OPTIONS", "POST"), {}),
    ("/admin/login", "admin.login", ("GET", "HEAD", "OPTIONS", "POST"), {}),
    ("/admin/logout", "admin.logout", ("OPTIONS", "POST"), {}),
    ("/admin/password", "admin.password", ("GET", "HEAD", "OPTIONS", "POST"), {}),
    ("/admin/", "admin.dashboard", ("GET", "HEAD", "OPTIONS"), {}),
    ("/admin/groups", "admin.groups", ("GET", "HEAD", "OPTIONS"), {}),
    ("/admin/groups/new", "admin.group_new", ("GET", "HEAD", "OPTIONS"), {}),
    ("/admin/groups/new", "admin.group_create", ("OPTIONS", "POST"), {}),
    ("/admin/groups/<slug>", "admin.group", ("GET", "HEAD", "OPTIONS"), {}),
    ("/admin/groups/<slug>/details", "admin.group_details", ("OPTIONS", "POST"), {}),
    ("/admin/groups/<slug>/invite", "admin.group_invite", ("OPTIONS", "POST"), {}),
    ("/admin/groups/<slug>/invite-csv", "admin.group_invite_csv", ("OPTIONS", "POST"), {}),
    (
        "/admin/groups/<slug>/members/<int(max=2147483647):subscription_id>/<action>",
        "admin.group_member",
        ("OPTIONS", "POST"),
        {},
    ),
    ("/admin/groups/<slug>/coordinators", "admin.group_coordinators", ("OPTIONS", "POST"), {}),
    ("/admin/issues", "admin.issues", ("GET", "HEAD", "OPTIONS"), {}),
    ("/admin/issues/new", "admin.issue_new", ("GET", "HEAD", "OPTIONS", "POST"), {}),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/edit",
        "admin.issue_edit",
        ("GET", "HEAD", "OPTIONS", "POST"),
        {},
    ),
    ("/admin/issues/<int(max=2147483647):issue_id>", "admin.issue", ("GET", "HEAD", "OPTIONS"), {}),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/progress.json",
        "admin.issue_progress",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/preview",
        "admin.issue_preview",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/preview.html",
        "admin.issue_preview_html",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    ("/admin/issues/new/preview", "admin.issue_new_preview", ("OPTIONS", "POST"), {}),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/edit/preview",
        "admin.issue_edit_preview",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/<action>",
        "admin.issue_action",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/update",
        "admin.meeting_update",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/cancel",
        "admin.meeting_cancel",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/dates/<int(max=99999999999):key>",
        "admin.meeting_date",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/attachments",
        "admin.issue_attachment_add",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/issues/<int(max=2147483647):issue_id>/attachments/<int(max=2147483647):attachment_id>/remove",
        "admin.issue_attachment_remove",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/attendance",
        "admin.meeting_attendance",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/attendance",
        "admin.meeting_attendance_post",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/attendance.csv",
        "admin.meeting_attendance_csv",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/attendance/sheet",
        "admin.meeting_attendance_sheet",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/meetings/<int(max=2147483647):meeting_id>/minutes",
        "admin.meeting_minutes",
        ("OPTIONS", "POST"),
        {},
    ),
    ("/admin/subscribers", "admin.subscribers", ("GET", "HEAD", "OPTIONS"), {}),
    (
        "/admin/subscribers/<int(max=2147483647):subscriber_id>",
        "admin.subscriber",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/subscribers/<int(max=2147483647):subscriber_id>/export.json",
        "admin.subscriber_export",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/subscribers/<int(max=2147483647):subscriber_id>/reactivate",
        "admin.subscriber_reactivate",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/subscribers/<int(max=2147483647):subscriber_id>/erase",
        "admin.subscriber_erase",
        ("GET", "HEAD", "OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/subscribers/import",
        "admin.subscribers_import",
        ("GET", "HEAD", "OPTIONS", "POST"),
        {},
    ),
    (
        "/admin/subscribers/imports/<int(max=2147483647):import_id>",
        "admin.subscribers_import_status",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/subscribers/imports/<int(max=2147483647):import_id>/progress.json",
        "admin.subscribers_import_progress",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    ("/admin/subscribers/export.csv", "admin.subscribers_export", ("GET", "HEAD", "OPTIONS"), {}),
    ("/admin/users", "admin.users", ("GET", "HEAD", "OPTIONS", "POST"), {}),
    (
        "/admin/users/<int(max=2147483647):user_id>/active",
        "admin.user_toggle_active",
        ("OPTIONS", "POST"),
        {},
    ),
    ("/archive/<slug>", "archive.list_issues", ("GET", "HEAD", "OPTIONS"), {}),
    ("/archive/<slug>/<int:number>", "archive.show_issue", ("GET", "HEAD", "OPTIONS"), {}),
    ("/archive/<slug>/feed.xml", "archive.feed", ("GET", "HEAD", "OPTIONS"), {}),
    ("/groups/", "groups.index", ("GET", "HEAD", "OPTIONS"), {}),
    ("/groups/<slug>", "groups.group_page", ("GET", "HEAD", "OPTIONS"), {}),
    ("/groups/<slug>/join", "groups.join", ("OPTIONS", "POST"), {}),
    ("/groups/join/<token>", "groups.confirm_join", ("GET", "HEAD", "OPTIONS"), {}),
    ("/groups/join/<token>", "groups.confirm_join_post", ("OPTIONS", "POST"), {}),
    ("/groups/invitation/<token>", "groups.invitation", ("GET", "HEAD", "OPTIONS"), {}),
    ("/groups/invitation/<token>", "groups.invitation_post", ("OPTIONS", "POST"), {}),
    ("/groups/<slug>/member/<token>", "groups.member_page", ("GET", "HEAD", "OPTIONS"), {}),
    (
        "/groups/<slug>/member/<token>/documents/<int(max=2147483647):document_id>",
        "groups.document",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    ("/groups/<slug>/calendar/<token>.ics", "groups.calendar_feed", ("GET", "HEAD", "OPTIONS"), {}),
    ("/meetings/<uid>.ics", "meetings.download", ("GET", "HEAD", "OPTIONS"), {}),
    ("/rsvp/<token>", "rsvp.answer", ("GET", "HEAD", "OPTIONS"), {}),
    ("/rsvp/<token>", "rsvp.answer_post", ("OPTIONS", "POST"), {}),
    ("/api/v1/openapi.json", "api.openapi_document", ("GET", "HEAD", "OPTIONS"), {}),
    ("/api/v1/lists", "api.lists", ("GET", "HEAD", "OPTIONS"), {}),
    ("/api/v1/lists/<slug>/issues", "api.create_issue", ("OPTIONS", "POST"), {}),
    ("/api/v1/issues/<int(max=2147483647):issue_id>", "api.issue", ("GET", "HEAD", "OPTIONS"), {}),
    ("/api/v1/issues/<int(max=2147483647):issue_id>/send", "api.send", ("OPTIONS", "POST"), {}),
    (
        "/api/v1/issues/<int(max=2147483647):issue_id>/attachments",
        "api.add_attachment",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/api/v1/meetings/<int(max=2147483647):meeting_id>/update",
        "api.update_meeting",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/api/v1/meetings/<int(max=2147483647):meeting_id>/cancel",
        "api.cancel_meeting",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/api/v1/meetings/<int(max=2147483647):meeting_id>/dates/<recurrence_id>/update",
        "api.update_meeting_date",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/api/v1/meetings/<int(max=2147483647):meeting_id>/dates/<recurrence_id>/cancel",
        "api.cancel_meeting_date",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/api/v1/meetings/<int(max=2147483647):meeting_id>/dates/<recurrence_id>/cancel-following",
        "api.cancel_meeting_following",
        ("OPTIONS", "POST"),
        {},
    ),
    (
        "/api/v1/meetings/<int(max=2147483647):meeting_id>/dates/<recurrence_id>/move-following",
        "api.move_meeting_following",
        ("OPTIONS", "POST"),
        {},
    ),
    ("/api/v1/issues/<int(max=2147483647):issue_id>/pause", "api.pause", ("OPTIONS", "POST"), {}),
    ("/api/v1/issues/<int(max=2147483647):issue_id>/resume", "api.resume", ("OPTIONS", "POST"), {}),
    ("/api/v1/issues/<int(max=2147483647):issue_id>/cancel", "api.cancel", ("OPTIONS", "POST"), {}),
    ("/healthz", "health.healthz", ("GET", "HEAD", "OPTIONS"), {}),
    ("/readyz", "health.readyz", ("GET", "HEAD", "OPTIONS"), {}),
    ("/metrics", "metrics.metrics_page", ("GET", "HEAD", "OPTIONS"), {}),
    ("/privacy", "privacy.notice", ("GET", "HEAD", "OPTIONS"), {}),
    (
        "/privacy/<int(max=2147483647):version>",
        "privacy.notice_version",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
    (
        "/admin/texts/<int(max=2147483647):text_id>",
        "privacy.admin_text",
        ("GET", "HEAD", "OPTIONS"),
        {},
    ),
)


def add_to(app: Flask) -> None:
    """Add the rules the app does not have yet (Flask's own `static`), build-only."""
    present = {rule.endpoint for rule in app.url_map.iter_rules()}
    for rule, endpoint, methods, defaults in RULES:
        if endpoint not in present:
            app.url_map.add(
                Rule(rule, endpoint=endpoint, methods=methods, defaults=defaults, build_only=True)
            )


def rules_of(app: Flask) -> tuple[RuleData, ...]:
    """What of an app's URL map builds its URLs, in its order (to compare, and to write RULES)."""
    return tuple(
        (rule.rule, str(rule.endpoint), tuple(sorted(rule.methods or ())), rule.defaults)
        for rule in app.url_map.iter_rules()
    )
