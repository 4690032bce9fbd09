"""What a token's detail page shows (Insight), and the two row badges it explains.

- requests per UTC day for 30 days, laid out as a bar chart (the SVG itself is a template,
  shared/templates/tokens/_usage_chart.html; the geometry is computed here so it is tested);
- the networks that used it (shared.usage records them on every request);
- its audit history: what was done to it, and what was done with it;
- its effective rights: `tokens.rights_table`, the very `decide` the API runs, as a scope ×
  method grid, with the cells it used in the last 30 days marked;
- the rules behind the `Dormant` and `New network` badges. The dormancy rule (`unused_for`) is
  the one the unused-token policy applies too (shared.dormant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from shared.core import clock, dates
from shared.core.extensions import db
from shared.models import ApiToken, AuditEvent, TokenNetwork
from shared.tokens import rights, usage

CHART_DAYS = 30
# Dormant: no request for this many days (or never used, and created this long ago).
DORMANT_AFTER_DAYS = 90
# `New network` stays on a row this long after a first use from a network it had not used before.
NEW_NETWORK_WINDOW = timedelta(days=7)
HISTORY_LIMIT = 100
NETWORKS_LIMIT = 100


# --------------------------------------------------------------------------- the row badges


def last_activity(token: ApiToken) -> datetime:
    """Its last request, or its creation when it was never used."""
    return token.last_used_at or token.created_at


def unused_for(token: ApiToken, days: int, now: datetime | None = None) -> bool:
    """No request for `days` days (never used: created at least `days` days ago). The one rule the
    Dormant badge and the unused-token policy share."""
    return last_activity(token) <= (now or clock.now()) - timedelta(days=days)


def is_dormant(token: ApiToken, now: datetime | None = None) -> bool:
    """A live token unused for DORMANT_AFTER_DAYS. Canaries are never dormant: never being used is
    their purpose."""
    return token.revoked_at is None and not token.is_canary and unused_for(token, DORMANT_AFTER_DAYS, now)


def has_new_network(token: ApiToken, now: datetime | None = None) -> bool:
    """First used from a new network (token.anomaly) within NEW_NETWORK_WINDOW."""
    return (token.revoked_at is None and token.new_network_at is not None
            and token.new_network_at > (now or clock.now()) - NEW_NETWORK_WINDOW)


# --------------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class Bar:
    day: date
    requests: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Tick:
    value: int
    y: float


@dataclass(frozen=True)
class DayLabel:
    x: float
    text: str


@dataclass(frozen=True)
class UsageChart:
    """Requests per day, oldest first, with the geometry of an SVG bar chart (viewBox units)."""

    bars: list[Bar]
    ticks: list[Tick]
    labels: list[DayLabel]
    width: int = 720
    height: int = 220
    left: int = 48  # room for the y axis labels
    right: int = 712
    top: int = 12
    bottom: int = 190  # the baseline; the day labels below it

    @property
    def total(self) -> int:
        return sum(bar.requests for bar in self.bars)

    @property
    def peak(self) -> Bar | None:
        """The busiest day (the latest of equals), or None when there was no request."""
        busiest = max(reversed(self.bars), key=lambda bar: bar.requests, default=None)
        return busiest if busiest is not None and busiest.requests > 0 else None

    @property
    def summary(self) -> str:
        """The chart in one sentence, for assistive technology and the page's text."""
        span = f"from {dates.day(self.first_day)} to {dates.day(self.last_day)}"
        if self.peak is None:
            return f"No requests {span}."
        total = f"{self.total:,} request{'' if self.total == 1 else 's'}"
        return (f"{total} {span}; the busiest day was {dates.day(self.peak.day)} "
                f"with {self.peak.requests:,}.")

    @property
    def first_day(self) -> date:
        return self.bars[0].day

    @property
    def last_day(self) -> date:
        return self.bars[-1].day


def _nice_step(largest: int, intervals: int) -> int:
    """The smallest 1, 2 or 5 × 10^k step (at least 1) with `intervals` steps reaching `largest`."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude * intervals >= largest:
                return factor * magnitude
        magnitude *= 10


def chart_layout(series: list[tuple[date, int]], *, intervals: int = 4) -> UsageChart:
    """Lay out (day, requests) pairs, oldest first, as bars on a scale of round numbers."""
    frame = UsageChart(bars=[], ticks=[], labels=[])  # the default dimensions
    step = _nice_step(max((requests for _, requests in series), default=0), intervals)
    scale_top = step * intervals
    plot_height = frame.bottom - frame.top
    slot = (frame.right - frame.left) / max(len(series), 1)
    bar_width = round(slot * 0.72, 2)
    bars, labels = [], []
    for index, (day, requests) in enumerate(series):
        height = round(plot_height * requests / scale_top, 2)
        x = round(frame.left + index * slot + (slot - bar_width) / 2, 2)
        bars.append(Bar(day, requests, x, round(frame.bottom - height, 2), bar_width, height))
        if (len(series) - 1 - index) % 7 == 0:  # the last day (today) and every week before it
            labels.append(DayLabel(round(x + bar_width / 2, 2), dates.day(day, year=False)))
    ticks = [Tick(step * level, round(frame.bottom - plot_height * level / intervals, 2))
             for level in range(intervals + 1)]
    return UsageChart(bars=bars, ticks=ticks, labels=labels)


def usage_chart(token: ApiToken, days: int = CHART_DAYS) -> UsageChart:
    """The token's requests per UTC day, today included, days without requests as 0."""
    counts = usage.daily_requests([token.id], days)[token.id]
    return chart_layout([(day, counts.get(day, 0)) for day in usage.days_window(days)])


# --------------------------------------------------------------------------- networks, history


@dataclass(frozen=True)
class NetworkRow:
    network: TokenNetwork
    is_new: bool  # first seen within NEW_NETWORK_WINDOW, after other networks


def networks_of(token: ApiToken, now: datetime | None = None) -> tuple[list[NetworkRow], int]:
    """The networks it was used from, most recently seen first (at most NETWORKS_LIMIT), and how
    many there are in all."""
    rows = list(db.session.scalars(
        select(TokenNetwork).where(TokenNetwork.organization_id == token.organization_id,
                                   TokenNetwork.token_id == token.id)
        .order_by(TokenNetwork.last_seen_at.desc(), TokenNetwork.id.desc())))
    if not rows:
        return [], 0
    first_ever = min(row.first_seen_at for row in rows)
    recent = (now or clock.now()) - NEW_NETWORK_WINDOW
    return ([NetworkRow(row, row.first_seen_at > first_ever and row.first_seen_at > recent)
             for row in rows[:NETWORKS_LIMIT]], len(rows))


def history_of(token: ApiToken, limit: int = HISTORY_LIMIT) -> list[AuditEvent]:
    """Audit events about the token and those of requests made with it, newest first."""
    return list(db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.organization_id == token.organization_id,
               or_((AuditEvent.target_type == "token") & (AuditEvent.target_id == token.public_id),
                   AuditEvent.actor_token_id == token.id))
        .options(joinedload(AuditEvent.actor_user))
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit)))


# --------------------------------------------------------------------------- effective rights


@dataclass(frozen=True)
class RightsCell:
    scope: str
    method: str
    allowed: bool
    reason: str | None  # why not, as the API's 403 says it
    used: bool  # used in the last CHART_DAYS days


@dataclass(frozen=True)
class Refusal:
    """One reason a request is refused, and every scope × method it refuses."""

    reason: str
    scopes: list[tuple[str, list[RightsCell]]]  # (scope, its refused cells), in the table's order


@dataclass(frozen=True)
class RightsGrid:
    methods: tuple[str, ...]
    rows: list[tuple[str, list[RightsCell]]]  # (scope, one cell per method)

    @property
    def allowed(self) -> list[tuple[str, list[RightsCell]]]:
        """What the token can do: each scope with the methods it may call there (scopes with none left out)."""
        return [(scope, kept) for scope, cells in self.rows if (kept := [c for c in cells if c.allowed])]

    @property
    def refusals(self) -> list[Refusal]:
        """What it cannot do, grouped by why: each reason once, in the order the table first meets it."""
        grouped: dict[str, dict[str, list[RightsCell]]] = {}
        for scope, cells in self.rows:
            for cell in cells:
                if not cell.allowed:
                    grouped.setdefault(cell.reason or "Refused", {}).setdefault(scope, []).append(cell)
        return [Refusal(reason, list(scopes.items())) for reason, scopes in grouped.items()]


def rights_grid(token: ApiToken) -> RightsGrid:
    """tokens.rights_table (the API's own decision, cell by cell) as rows of scopes and columns of
    methods, each cell marked when the token used it in the last 30 days."""
    used = usage.observed_rights(token.id, days=CHART_DAYS)
    rows: dict[str, list[RightsCell]] = {}
    for entry in rights.rights_table(token):
        cell = RightsCell(entry["scope"], entry["method"], entry["allowed"], entry["reason"],
                          (entry["scope"], entry["method"]) in used)
        rows.setdefault(cell.scope, []).append(cell)
    return RightsGrid(rights.RIGHTS_METHODS, list(rows.items()))


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class TokenInsight:
    chart: UsageChart
    networks: list[NetworkRow]
    network_count: int
    history: list[AuditEvent]
    rights: RightsGrid


def insight_for(token: ApiToken) -> TokenInsight:
    """Everything the detail page shows beyond the token's own fields. The caller has already
    loaded the token for the actor (tokens.get_token_for), which decides who may see it. The
    badges come with the page's TokenRow (is_dormant, has_new_network), as in the list."""
    networks, network_count = networks_of(token)
    return TokenInsight(chart=usage_chart(token), networks=networks, network_count=network_count,
                        history=history_of(token), rights=rights_grid(token))
