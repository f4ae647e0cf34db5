"""Dashboard: subscribers per list and status, and sign-ups per week.

The weekly chart is drawn on the server as inline SVG: it needs no script
(the CSP allows none inline, and no CDN is wanted), prints, and reads well to
screen readers through its `<title>` elements and the table beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from flask import render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import pgettext
from sqlalchemy import DateTime, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from ..bounces import complaints
from ..clock import local_zone, utcnow
from ..extensions import db
from ..i18n import current_language
from ..models import (
    SUBSCRIPTION_STATUSES,
    ConsentEvent,
    MailingList,
    Subscription,
    SubscriptionStatus,
)
from .auth import _l, account, visible_lists
from .blueprint import bp

WEEKS = 12

# Which consent steps count as which series. The consent log, not the
# subscriptions' own timestamps, because those are overwritten when someone
# signs up again; the log keeps every step. The labels are Czech; `series_labels`
# translates them (in the "dashboard" context: "Přihlášení" is also the sign-in page).
SERIES = (
    ("signups", "Přihlášení", ("signup", "import", "preferences_add")),
    ("confirmations", "Potvrzení", ("confirm", "import", "preferences_add")),
    ("unsubscribes", "Odhlášení", ("unsubscribe", "preferences_remove")),
)

STATUS_LABELS = {
    SubscriptionStatus.PENDING: _l("Čeká na potvrzení"),
    SubscriptionStatus.CONFIRMED: _l("Potvrzeno"),
    SubscriptionStatus.UNSUBSCRIBED: _l("Odhlášeno"),
    SubscriptionStatus.BOUNCED: _l("Nedoručitelné"),
}

# Chart geometry, in SVG user units (the viewBox scales it to the page).
CHART_WIDTH = 720
CHART_HEIGHT = 260
PLOT_LEFT = 44
PLOT_RIGHT = 8
PLOT_TOP = 12
PLOT_BOTTOM = 36
BAR_GAP = 2


@bp.app_template_filter("prague")
def prague(value: datetime | None, pattern: str = "%-d. %-m. %Y %H:%M") -> str:
    """A stored (naive UTC) time as people here read it: Europe/Prague wall-clock time.

    `pattern` is the Czech form; in English, CLDR's "17 Nov 2025, 14:05" (with
    seconds when the pattern has them, the date alone when it has no hours). A
    machine-readable pattern ("%Y-%m-%dT%H:%M", an input's value) is the same in
    every language."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(local_zone())
    if current_language() == "cs" or pattern.startswith("%Y-"):
        return local.strftime(pattern)
    if "%H" not in pattern:
        english = "d MMM y"
    else:
        english = "d MMM y, HH:mm:ss" if "%S" in pattern else "d MMM y, HH:mm"
    return format_datetime(local, english, locale=current_language())


@bp.app_template_filter("percent_figure")
def percent_figure(fraction: float) -> str:
    """A rate as a percentage with two decimals: "0,12 %" in Czech, "0.12%" in English."""
    figure = format_decimal(fraction * 100, "0.00", locale=current_language())
    return f"{figure} %" if current_language() == "cs" else f"{figure}%"


def series_labels() -> dict[str, str]:
    """The chart's series names in the request's language."""
    return {
        "signups": pgettext("dashboard", "Přihlášení"),
        "confirmations": pgettext("dashboard", "Potvrzení"),
        "unsubscribes": pgettext("dashboard", "Odhlášení"),
    }


# --- counts -------------------------------------------------------------------


def status_counts(list_ids: list[int]) -> dict[int, dict[str, int]]:
    """Subscriptions per list and status, every status present (zero when none)."""
    counts = {list_id: dict.fromkeys(SUBSCRIPTION_STATUSES, 0) for list_id in list_ids}
    if not list_ids:
        return counts
    rows = db.session.execute(
        select(Subscription.list_id, Subscription.status, func.count())
        .where(Subscription.list_id.in_(list_ids))
        .group_by(Subscription.list_id, Subscription.status)
    )
    for list_id, status, count in rows:
        counts[list_id][status] = count
    return counts


class hour_of(FunctionElement):
    """A timestamp truncated to its hour, in SQL on either database.

    Grouping by hour in the database keeps the result small however large the
    lists are (at most 24 × 7 × 12 rows per list and step), and hours are fine
    enough to place each one in the right Prague week, which starts at
    midnight local time, not UTC.
    """

    type = DateTime()
    inherit_cache = True


@compiles(hour_of)
def _hour_of_sqlite(element: hour_of, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:00:00', {column})"


@compiles(hour_of, "postgresql")
def _hour_of_postgresql(element: hour_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date_trunc('hour', {compiler.process(element.clauses, **kw)})"


@dataclass
class Bar:
    series: str
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass
class Week:
    monday: date
    label: str  # "t. 47" (English "w. 47")
    title: str  # "týden 47/2025 (17. 11.–23. 11.)" (English "week 47/2025 (17 Nov–23 Nov)")
    counts: dict[str, int]
    center: float = 0.0
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Chart:
    weeks: list[Week]
    ticks: list[tuple[int, float]]  # (value, y)
    maximum: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    plot_left: int = PLOT_LEFT
    plot_right: int = CHART_WIDTH - PLOT_RIGHT
    plot_top: int = PLOT_TOP
    plot_bottom: int = CHART_HEIGHT - PLOT_BOTTOM

    @property
    def total(self) -> dict[str, int]:
        return {key: sum(w.counts[key] for w in self.weeks) for key, _, _ in SERIES}

    @property
    def has_activity(self) -> bool:
        """Anything to draw: a list with no sign-up, confirmation or unsubscribe in the
        charted weeks gets one line instead of an empty chart."""
        return any(self.total.values())


def week_starts(now: datetime, weeks: int = WEEKS) -> list[date]:
    """The Mondays (Prague calendar) of the last `weeks` ISO weeks, this one last."""
    today = now.replace(tzinfo=UTC).astimezone(local_zone()).date()
    this_monday = today - timedelta(days=today.weekday())
    return [this_monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def weekly_counts(list_ids: list[int], mondays: list[date]) -> dict[int, dict[date, dict]]:
    """Consent steps per list, Prague ISO week and series."""
    zone = local_zone()
    result: dict[int, dict[date, dict[str, int]]] = {
        list_id: {m: dict.fromkeys((s for s, _, _ in SERIES), 0) for m in mondays}
        for list_id in list_ids
    }
    if not list_ids:
        return result
    since = (
        datetime.combine(mondays[0], datetime.min.time(), zone).astimezone(UTC).replace(tzinfo=None)
    )
    hour: ColumnElement = hour_of(ConsentEvent.occurred_at)
    actions = {a for _, _, series_actions in SERIES for a in series_actions}
    rows = db.session.execute(
        select(ConsentEvent.list_id, ConsentEvent.action, hour, func.count())
        .where(
            ConsentEvent.list_id.in_(list_ids),
            ConsentEvent.action.in_(actions),
            ConsentEvent.occurred_at >= since,
        )
        .group_by(ConsentEvent.list_id, ConsentEvent.action, hour)
    )
    for list_id, action, at, count in rows:
        if isinstance(at, str):  # SQLite without the column's type processing
            at = datetime.fromisoformat(at)
        local = at.replace(tzinfo=UTC).astimezone(zone).date()
        monday = local - timedelta(days=local.weekday())
        if monday not in result[list_id]:
            continue  # in the future (clock skew): not on this chart
        for key, _label, series_actions in SERIES:
            if action in series_actions:
                result[list_id][monday][key] += count
    return result


def nice_ceiling(value: int) -> int:
    """The axis top: four equal steps of 1, 2 or 5 × 10ⁿ reaching at least `value`."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if 4 * step * magnitude >= value:
                return 4 * step * magnitude
        magnitude *= 10


def _day_and_month(day: date) -> str:
    """ "17. 11." in Czech, "17 Nov" in English."""
    language = current_language()
    return format_date(day, "d. M." if language == "cs" else "d MMM", locale=language)


def build_chart(counts_by_week: dict[date, dict[str, int]]) -> Chart:
    """Place grouped bars (one group per week, one bar per series) on the plot."""
    mondays = sorted(counts_by_week)
    maximum = nice_ceiling(max((max(c.values()) for c in counts_by_week.values()), default=0))
    chart = Chart(weeks=[], ticks=[], maximum=maximum)
    labels = series_labels()
    plot_height = chart.plot_bottom - chart.plot_top
    slot = (chart.plot_right - chart.plot_left) / max(len(mondays), 1)
    bar_width = (slot * 0.75 - BAR_GAP * (len(SERIES) - 1)) / len(SERIES)
    for step in range(5):
        value = maximum * step // 4  # exact: the top is four equal steps
        chart.ticks.append((value, round(chart.plot_bottom - plot_height * value / maximum, 2)))
    for index, monday in enumerate(mondays):
        iso_year, iso_week, _weekday = monday.isocalendar()
        week = Week(
            monday=monday,
            label=_("t. %(week)d", week=iso_week),
            title=_(
                "týden %(week)d/%(year)d (%(monday)s–%(sunday)s)",
                week=iso_week,
                year=iso_year,
                monday=_day_and_month(monday),
                sunday=_day_and_month(monday + timedelta(days=6)),
            ),
            counts=counts_by_week[monday],
        )
        left = chart.plot_left + index * slot + slot * 0.125
        week.center = round(chart.plot_left + index * slot + slot / 2, 2)
        for number, (key, _label, _actions) in enumerate(SERIES):
            value = week.counts[key]
            height = plot_height * value / maximum
            week.bars.append(
                Bar(
                    series=key,
                    label=labels[key],
                    value=value,
                    x=round(left + number * (bar_width + BAR_GAP), 2),
                    y=round(chart.plot_bottom - height, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                )
            )
        chart.weeks.append(week)
    return chart


@dataclass
class ListSummary:
    mailing_list: MailingList
    counts: dict[str, int]
    chart: Chart

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def summaries() -> list[ListSummary]:
    """What the dashboard shows, for the lists the signed-in account may see."""
    lists = visible_lists()
    ids = [m.id for m in lists]
    counts = status_counts(ids)
    weekly = weekly_counts(ids, week_starts(utcnow()))
    return [ListSummary(m, counts[m.id], build_chart(weekly[m.id])) for m in lists]


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    return render_template(
        "admin/dashboard.html",
        summaries=summaries(),
        series=list(series_labels().items()),
        statuses=SUBSCRIPTION_STATUSES,
        status_labels=STATUS_LABELS,
        weeks=WEEKS,
        # Over all lists: a provider judges the sender, not one list.
        complaint_rate=complaints.recent_rate() if account().role != "coordinator" else None,
        complaint_days=complaints.RATE_DAYS,
    )
