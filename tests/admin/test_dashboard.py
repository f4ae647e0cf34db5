"""The admin dashboard: counts per list and status, and the weekly chart drawn as SVG."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from service.admin.dashboard import nice_ceiling, prague, week_starts
from service.clock import utcnow
from service.extensions import db
from service.models import ConsentEvent, MailingList, Subscriber, Subscription
from tests.conftest import add_confirmed_subscribers, log_in

PRAGUE = ZoneInfo("Europe/Prague")


def mailing_list(slug: str) -> MailingList:
    return db.session.scalar(select(MailingList).filter_by(slug=slug))


def add_person(email: str, slug: str, status: str) -> Subscriber:
    person = Subscriber(email=email, email_key=email, ascii_email=email)
    person.subscriptions.append(Subscription(mailing_list=mailing_list(slug), status=status))
    db.session.add(person)
    db.session.commit()
    return person


def add_event(person: Subscriber, slug: str, action: str, at: datetime) -> None:
    db.session.add(
        ConsentEvent(
            subscriber=person,
            mailing_list=mailing_list(slug),
            action=action,
            channel="page",
            occurred_at=at,
        )
    )
    db.session.commit()


def utc(local: datetime) -> datetime:
    """A Prague wall-clock time as stored: naive UTC."""
    return local.replace(tzinfo=PRAGUE).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def status_cells(page: str, slug: str) -> dict[str, int]:
    row = re.search(rf'<tr data-list="{slug}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {slug}"
    return {s: int(n) for s, n in re.findall(r'data-status="(\w+)">(\d+)<', row.group(1))}


def list_section(page: str, name: str) -> str:
    match = re.search(
        rf'<section class="list-summary"[^>]*>\s*<h2[^>]*>{name}</h2>(.*?)</section>', page, re.S
    )
    assert match, f"no section for {name}"
    return match.group(1)


def bar_value(section: str, series_label: str, monday) -> int:
    iso_year, iso_week, _ = monday.isocalendar()
    match = re.search(
        rf'data-value="(\d+)"><title>{series_label}, týden {iso_week}/{iso_year} ', section
    )
    assert match, f"no {series_label} bar for week {iso_week}"
    return int(match.group(1))


def test_dashboard_requires_sign_in(client, app):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_dashboard_counts_subscribers_per_list_and_status(client, app, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    add_person("ceka@example.cz", "zpravodaj", "pending")
    add_person("odesel@example.cz", "zpravodaj", "unsubscribed")
    add_person("vraceno@example.cz", "zpravodaj", "bounced")
    add_person("novinky@example.cz", "novinky", "pending")
    log_in(client, accounts.editor.email)

    page = client.get("/admin/").get_data(as_text=True)

    assert status_cells(page, "zpravodaj") == {
        "pending": 1,
        "confirmed": 3,
        "unsubscribed": 1,
        "bounced": 1,
        "total": 6,
    }
    assert status_cells(page, "novinky")["pending"] == 1
    assert status_cells(page, "ostrava-psb")["total"] == 0
    # No sign-up, confirmation or unsubscribe in the charted weeks: one line, no charts.
    assert '<section class="list-summary"' not in page
    assert (
        "Bez přihlášení, potvrzení a odhlášení za posledních 12 týdnů: "
        "Zpravodaj sociálního bydlení, Novinky, Pracovní skupina sociálního bydlení."
    ) in " ".join(page.split())


def test_only_lists_with_activity_get_a_chart(client, app, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    add_event(
        add_person("jana@example.cz", "zpravodaj", "confirmed"), "zpravodaj", "signup", utcnow()
    )
    log_in(client, accounts.editor.email)

    page = " ".join(client.get("/admin/").get_data(as_text=True).split())

    assert page.count('<section class="list-summary"') == 1
    assert "4 potvrzení odběratelé" in list_section(page, "Zpravodaj sociálního bydlení")
    assert "za posledních 12 týdnů: Novinky, Pracovní skupina sociálního bydlení." in page


@pytest.fixture
def now(monkeypatch) -> datetime:
    """One moment for the test and the dashboard: no week can turn between the two."""
    import service.admin.dashboard

    frozen = utcnow()
    monkeypatch.setattr(service.admin.dashboard, "utcnow", lambda: frozen)
    return frozen


def test_weekly_chart_shows_each_week_s_signups_confirmations_and_unsubscribes(
    client, app, accounts, now
):
    person = add_person("jana@example.cz", "zpravodaj", "confirmed")
    mondays = week_starts(now)
    this_week, two_weeks_ago = mondays[-1], mondays[-3]
    noon = datetime.combine(two_weeks_ago, datetime.min.time()) + timedelta(days=2, hours=12)
    add_event(person, "zpravodaj", "signup", utc(noon))
    add_event(person, "zpravodaj", "signup", utc(noon + timedelta(hours=1)))
    add_event(person, "zpravodaj", "confirm", utc(noon + timedelta(days=1)))
    add_event(person, "zpravodaj", "import", utc(noon + timedelta(days=1)))
    # Monday 00:30 in Prague is still Sunday in UTC: it belongs to the new week.
    monday_morning = datetime.combine(this_week, datetime.min.time()) + timedelta(minutes=30)
    add_event(person, "zpravodaj", "unsubscribe", utc(monday_morning))
    # Older than twelve weeks: not on the chart.
    add_event(person, "zpravodaj", "signup", utc(noon - timedelta(weeks=20)))
    log_in(client, accounts.admin.email)

    page = client.get("/admin/").get_data(as_text=True)
    section = list_section(page, "Zpravodaj sociálního bydlení")

    assert bar_value(section, "Přihlášení", two_weeks_ago) == 3  # two sign-ups and an import
    assert bar_value(section, "Potvrzení", two_weeks_ago) == 2  # a confirmation and an import
    assert bar_value(section, "Odhlášení", two_weeks_ago) == 0
    assert bar_value(section, "Odhlášení", this_week) == 1
    assert bar_value(section, "Odhlášení", mondays[-2]) == 0
    assert section.count('<rect class="bar ') == 12 * 3
    assert f"t. {this_week.isocalendar()[1]}" in section
    assert "3 přihlášení, 2 potvrzení, 1 odhlášení" in section  # the aria-label summary


def test_bar_heights_are_proportional_to_the_counts(client, app, accounts, now):
    person = add_person("jana@example.cz", "zpravodaj", "confirmed")
    this_week = week_starts(now)[-1]
    at = utc(datetime.combine(this_week, datetime.min.time()) + timedelta(hours=1))
    for _ in range(4):
        add_event(person, "zpravodaj", "signup", at)
    add_event(person, "zpravodaj", "confirm", at)
    log_in(client, accounts.admin.email)

    section = list_section(
        client.get("/admin/").get_data(as_text=True), "Zpravodaj sociálního bydlení"
    )
    heights = {
        series: float(height)
        for height, series in re.findall(
            r'height="([\d.]+)" fill="#\w+" data-series="(\w+)" data-value="[1-9]', section
        )
    }
    assert heights["signups"] == 4 * heights["confirmations"]
    assert "<title>" in section and 'role="img"' in section and "aria-label=" in section


def test_dashboard_renders_under_the_content_security_policy(client, app, accounts):
    log_in(client, accounts.editor.email)
    response = client.get("/admin/")
    page = response.get_data(as_text=True)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "<svg" in page
    assert " style=" not in page and "<style" not in page
    assert "<script" not in page


def test_coordinator_sees_only_own_groups(client, app, accounts):
    add_confirmed_subscribers("zpravodaj", 2)
    add_confirmed_subscribers("ostrava-psb", 1, start=10)
    add_event(
        add_person("jana@example.cz", "ostrava-psb", "confirmed"), "ostrava-psb", "signup", utcnow()
    )
    log_in(client, accounts.coordinator.email)

    page = client.get("/admin/").get_data(as_text=True)

    assert status_cells(page, "ostrava-psb")["confirmed"] == 2
    assert 'data-list="zpravodaj"' not in page
    assert 'data-list="novinky"' not in page
    assert "Zpravodaj sociálního bydlení" not in page
    assert page.count('<section class="list-summary"') == 1
    assert 'href="/admin/subscribers' not in page  # not theirs to open


def test_prague_filter_shows_wall_clock_time_in_both_seasons(app):
    assert prague(datetime(2025, 1, 15, 12, 0)) == "15. 1. 2025 13:00"
    assert prague(datetime(2025, 7, 1, 22, 30)) == "2. 7. 2025 00:30"
    assert prague(None) == ""


def test_axis_top_is_a_round_number_above_the_highest_bar():
    assert nice_ceiling(0) == 4
    assert nice_ceiling(7) == 8
    assert nice_ceiling(11) == 20
    assert nice_ceiling(260) == 400
    assert nice_ceiling(401) == 800
