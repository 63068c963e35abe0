"""The Events tab's picture: service state changes (ServiceEvent rows) turned into per-service segments over a time
window, and the positions an SVG needs to draw them (rows, x positions, a colour class per state).

Pure: no database, no clock (the caller gives the window). A service's state at the window's start is the last
change seen before it; a service with no change at or before a moment has no segment there (luci did not know it).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

# state word (clustat's state_str) -> colour class; anything else is "unknown"
STATE_CLASSES: dict[str, str] = {
    "started": "ok", "starting": "ok",
    "stopped": "off", "disabled": "off", "uninitialized": "off",
    "stopping": "warn", "recovering": "warn", "migrating": "warn", "checking": "warn",
    "failed": "bad", "recoverable": "bad",
}
# the legend, in reading order: class, words, fill (the CSS classes tl-<class> set the same colours)
LEGEND: tuple[tuple[str, str, str], ...] = (
    ("ok", "started, starting", "#3a9d4a"),
    ("warn", "stopping, recovering, migrating", "#d99a1e"),
    ("bad", "failed, recoverable", "#c9382f"),
    ("off", "stopped, disabled", "#a9b1bf"),
    ("unknown", "other", "#6e7787"),
)
FILLS = {cls: fill for cls, _, fill in LEGEND}

# window choices offered by the tab: key -> (label, length)
WINDOWS: dict[str, tuple[str, timedelta]] = {
    "15m": ("15 min", timedelta(minutes=15)),
    "1h": ("1 h", timedelta(hours=1)),
    "6h": ("6 h", timedelta(hours=6)),
    "24h": ("24 h", timedelta(hours=24)),
}
DEFAULT_WINDOW = "1h"
TICK_STEPS = {"15m": timedelta(minutes=5), "1h": timedelta(minutes=15), "6h": timedelta(hours=1),
              "24h": timedelta(hours=4)}

# layout in SVG user units
LABEL_WIDTH = 170
CHART_WIDTH = 760
ROW_HEIGHT = 26
BAR_HEIGHT = 18
AXIS_HEIGHT = 22
CHAR_WIDTH = 7.0  # a 12-unit sans-serif character, generously: a name is written only where it surely fits
TEXT_PADDING = 6


class EventLike(Protocol):
    service: str
    state: str
    owner: str
    at: datetime


@dataclass(frozen=True)
class Segment:
    service: str
    start: datetime
    end: datetime
    state: str
    owner: str

    @property
    def state_class(self) -> str:
        return state_class(self.state)


def state_class(state: str) -> str:
    return STATE_CLASSES.get((state or "").lower(), "unknown")


def segments(events: Iterable[EventLike], start: datetime, end: datetime) -> dict[str, list[Segment]]:
    """Per service (sorted by name): its segments within [start, end], in time order.

    An event before `start` gives the state the window opens with; consecutive events with the same state and
    owner are merged; events after `end` are ignored."""
    if end <= start:
        raise ValueError("the window must end after it starts")
    by_service: dict[str, list[EventLike]] = {}
    for event in sorted(events, key=lambda e: e.at):
        by_service.setdefault(event.service, []).append(event)
    result: dict[str, list[Segment]] = {}
    for service in sorted(by_service):
        changes = _changes(by_service[service])
        opening = [e for e in changes if e.at <= start]
        inside = [e for e in changes if start < e.at < end]
        points = ([opening[-1]] if opening else []) + inside
        rows = []
        for i, event in enumerate(points):
            seg_start = max(event.at, start)
            seg_end = points[i + 1].at if i + 1 < len(points) else end
            rows.append(Segment(service, seg_start, seg_end, event.state, event.owner or ""))
        if rows:
            result[service] = rows
    return result


def _changes(events: Sequence[EventLike]) -> list[EventLike]:
    """Drop repeats: an event with the same state and owner as the one before it changes nothing."""
    kept: list[EventLike] = []
    for event in events:
        if kept and kept[-1].state == event.state and (kept[-1].owner or "") == (event.owner or ""):
            continue
        kept.append(event)
    return kept


def layout(by_service: dict[str, list[Segment]], start: datetime, end: datetime, *,
           tick_step: timedelta | None = None) -> dict[str, Any]:
    """What the template draws: the SVG size, one row per service with its bars (x, width, class, fill, a label
    where it fits, a title), and the time axis ticks."""
    span = (end - start).total_seconds()

    def x_of(moment: datetime) -> float:
        return round(LABEL_WIDTH + CHART_WIDTH * (moment - start).total_seconds() / span, 2)

    rows = []
    for index, (service, segs) in enumerate(by_service.items()):
        y = AXIS_HEIGHT + index * ROW_HEIGHT
        bars = []
        for seg in segs:
            x, x_end = x_of(seg.start), x_of(seg.end)
            width = round(max(x_end - x, 1.0), 2)
            fits = bool(seg.owner) and width >= len(seg.owner) * CHAR_WIDTH + 2 * TEXT_PADDING
            bars.append({
                "x": x, "width": width, "y": y + (ROW_HEIGHT - BAR_HEIGHT) / 2, "height": BAR_HEIGHT,
                "state": seg.state, "owner": seg.owner, "css": seg.state_class, "fill": FILLS[seg.state_class],
                "label": seg.owner if fits else "", "label_x": round(x + TEXT_PADDING, 2),
                "label_y": y + ROW_HEIGHT / 2 + 4,
                "title": f"{service}: {seg.state}" + (f" on {seg.owner}" if seg.owner else "")
                         + f" from {seg.start:%H:%M:%S} to {seg.end:%H:%M:%S}",
            })
        rows.append({"service": service, "y": y, "text_y": y + ROW_HEIGHT / 2 + 4, "bars": bars})
    height = AXIS_HEIGHT + max(len(rows), 1) * ROW_HEIGHT
    return {"width": LABEL_WIDTH + CHART_WIDTH, "height": height, "chart_x": LABEL_WIDTH,
            "chart_width": CHART_WIDTH, "rows": rows, "ticks": ticks(start, end, tick_step, x_of, height)}


def ticks(start: datetime, end: datetime, step: timedelta | None, x_of: Any, height: float) -> list[dict[str, Any]]:
    """Axis marks on round multiples of `step` (default: about six over the window)."""
    if step is None:
        step = max((end - start) / 6, timedelta(minutes=1))
    seconds = step.total_seconds()
    first = datetime.fromtimestamp((start.timestamp() // seconds + 1) * seconds, tz=start.tzinfo)
    marks = []
    moment = first
    while moment < end and len(marks) < 50:
        marks.append({"x": x_of(moment), "label": f"{moment:%H:%M}", "y2": height})
        moment += step
    return marks


def window_of(key: str | None) -> str:
    """A known window key (the default for anything else)."""
    return key if key in WINDOWS else DEFAULT_WINDOW


def picture(events: Iterable[EventLike], end: datetime, window: str) -> dict[str, Any]:
    """Segments and layout for the window `window` (a WINDOWS key) ending at `end`."""
    window = window_of(window)
    start = end - WINDOWS[window][1]
    by_service = segments(events, start, end)
    return {"window": window, "start": start, "end": end, "segments": by_service,
            "layout": layout(by_service, start, end, tick_step=TICK_STEPS[window])}
