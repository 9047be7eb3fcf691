"""Server-rendered SVG charts for the console: line charts over time buckets and a map of
regions. Pure functions from numbers to SVG text (``markupsafe.Markup``, its labels escaped):
no JavaScript, no chart library, nothing fetched.

Geometry (``line_chart``): a ``width`` x ``height`` view box; the plot area leaves
``MARGIN_LEFT`` px for the y-axis labels and ``MARGIN_BOTTOM`` for the x-axis labels. Bucket
``i`` of ``n`` sits at ``x = MARGIN_LEFT + i * plot_width / (n - 1)`` (one bucket: the
middle); a value ``v`` at ``y = MARGIN_TOP + plot_height * (1 - v / top)`` where ``top`` is
``nice_ceiling`` of the largest value (0 → 1). A ``None`` value (no data: a bucket without a
TTFT) breaks the line: each unbroken run is one ``<polyline>`` with ``data-series``.
Coordinates are rounded to 0.1 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

MARGIN_LEFT = 56
MARGIN_RIGHT = 10
MARGIN_TOP = 10
MARGIN_BOTTOM = 22
PALETTE = (
    "#2563eb",
    "#d97706",
    "#059669",
    "#dc2626",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
)
"""Series colours, in order (the legend uses the same)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name (legend, ``data-series``) and one value per x label (``None``: no
    data in that bucket)."""

    name: str
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= ``value`` (``value`` <= 0: 1)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0**exp
        if candidate >= value * (1 - 1e-12):
            return candidate
    return 10.0 ** (exp + 1)  # pragma: no cover (10 x 10^exp always fits)


def compact(value: float) -> str:
    """A short axis label: ``1234`` → ``1.2k``, ``2500000`` → ``2.5M``, ``0.25`` → ``0.25``."""
    a = abs(value)
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= bound:
            return f"{value / bound:.3g}{suffix}"
    return f"{value:.3g}"


def _fmt(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 640,
    height: int = 180,
    y_format: Callable[[float], str] = compact,
    chart_id: str = "",
) -> Markup:
    """An SVG line chart of ``series`` over the x ``labels`` (one per bucket).

    Args:
        labels: The buckets' labels, oldest first; the first, middle and last are drawn.
        series: The lines; each has one value per label.
        title: The chart's accessible name (``<title>`` and ``aria-label``).
        width / height: The view box in px.
        y_format: The y-axis labels' text (0 and the top).
        chart_id: The ``<svg>``'s ``id`` (omitted when empty).

    Returns:
        ``<svg class="chart">…</svg>``; with no labels, a chart saying "no data".

    Raises:
        ValueError: a series whose length differs from ``labels``.
    """
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(labels)}")
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    present = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(present, default=0.0))
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    parts = [
        f'<svg class="chart"{ident} viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" data-top="{_fmt(top)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" '
        f'x2="{width - MARGIN_RIGHT}" y2="{MARGIN_TOP + plot_h}"/>',
        f'<line class="grid" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
        f'x2="{width - MARGIN_RIGHT}" y2="{MARGIN_TOP}"/>',
        f'<text class="ylabel" x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + plot_h}" '
        f'text-anchor="end" dominant-baseline="middle">{escape(y_format(0))}</text>',
        f'<text class="ylabel" x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP}" text-anchor="end" '
        f'dominant-baseline="middle">{escape(y_format(top))}</text>',
    ]
    n = len(labels)
    if n == 0 or not present:
        parts.append(
            f'<text class="empty" x="{MARGIN_LEFT + plot_w / 2:.1f}" '
            f'y="{MARGIN_TOP + plot_h / 2:.1f}" text-anchor="middle">no data</text>'
        )

    def x_of(i: int) -> float:
        return MARGIN_LEFT + (plot_w / 2 if n == 1 else i * plot_w / (n - 1))

    for i in sorted({0, (n - 1) // 2, n - 1}) if n else ():
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(
            f'<text class="xlabel" x="{_fmt(x_of(i))}" y="{height - 6}" '
            f'text-anchor="{anchor}">{escape(labels[i])}</text>'
        )
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        run: list[str] = []
        runs: list[list[str]] = [run]
        for i, v in enumerate(s.values):
            if v is None:
                run = []
                runs.append(run)
                continue
            y = MARGIN_TOP + plot_h * (1 - v / top)
            run.append(f"{_fmt(x_of(i))},{_fmt(y)}")
        for pts in runs:
            if not pts:
                continue
            shape = "polyline" if len(pts) > 1 else "circle"
            if shape == "circle":
                cx, cy = pts[0].split(",")
                parts.append(
                    f'<circle data-series="{escape(s.name)}" cx="{cx}" cy="{cy}" r="2.5" '
                    f'fill="{colour}"/>'
                )
            else:
                parts.append(
                    f'<polyline data-series="{escape(s.name)}" fill="none" stroke="{colour}" '
                    f'stroke-width="2" points="{" ".join(pts)}"/>'
                )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True, slots=True)
class MapRegion:
    """A region on the map: its id, where it is (``None``: unknown, drawn in a row below
    the map), how many of its replicas can take requests of how many, and whether it is
    enabled."""

    id: str
    lat: float | None
    lon: float | None
    available: int
    replicas: int
    enabled: bool = True

    @property
    def health(self) -> str:
        """``ok`` (every replica available), ``degraded`` (some), ``down`` (none, or
        disabled), ``empty`` (no replicas)."""
        if self.replicas == 0:
            return "empty"
        if not self.enabled or self.available == 0:
            return "down"
        return "ok" if self.available == self.replicas else "degraded"


MAP_WIDTH = 720
MAP_HEIGHT = 360
_UNPLACED_ROW = 40


def project(lat: float, lon: float) -> tuple[float, float]:
    """Equirectangular: longitude -180..180 → x 0..``MAP_WIDTH``, latitude 90..-90 → y
    0..``MAP_HEIGHT``."""
    return (lon + 180) / 360 * MAP_WIDTH, (90 - lat) / 180 * MAP_HEIGHT


def region_map(regions: Sequence[MapRegion]) -> Markup:
    """An SVG map of ``regions``: a latitude/longitude grid (every 30°), one dot a region
    (``class="region <health>"``, ``data-region``), labelled with its id and
    ``available/replicas``; regions without a location in a row under the map (the row
    alone when none has one)."""
    unplaced = [r for r in regions if r.lat is None or r.lon is None]
    located = [r for r in regions if r.lat is not None and r.lon is not None]
    top = MAP_HEIGHT if located else 0  # no region has a location: the row alone
    height = top + (_UNPLACED_ROW if unplaced or not located else 0)
    parts = [
        f'<svg class="region-map" viewBox="0 0 {MAP_WIDTH} {height}" role="img" '
        f'aria-label="Regions" xmlns="http://www.w3.org/2000/svg"><title>Regions</title>',
    ]
    if located:
        parts.append(f'<rect class="sea" x="0" y="0" width="{MAP_WIDTH}" height="{MAP_HEIGHT}"/>')
        for lon in range(-150, 180, 30):
            gx = _fmt(project(0, lon)[0])
            parts.append(f'<line class="grid" x1="{gx}" y1="0" x2="{gx}" y2="{MAP_HEIGHT}"/>')
        for lat in range(-60, 90, 30):
            gy = _fmt(project(lat, 0)[1])
            parts.append(f'<line class="grid" x1="0" y1="{gy}" x2="{MAP_WIDTH}" y2="{gy}"/>')
    placed: list[tuple[MapRegion, float, float]] = []
    for r in located:
        x, y = project(r.lat or 0.0, r.lon or 0.0)
        placed.append((r, x, y))
    step = MAP_WIDTH / (len(unplaced) + 1) if unplaced else 0
    placed += [(r, step * (i + 1), top + _UNPLACED_ROW / 2) for i, r in enumerate(unplaced)]
    for r, x, y in placed:
        label = f"{r.id} {r.available}/{r.replicas}"
        parts.append(
            f'<g class="region {r.health}" data-region="{escape(r.id)}">'
            f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="6"/>'
            f'<text x="{_fmt(x + 9)}" y="{_fmt(y + 4)}">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = [
    "MAP_HEIGHT",
    "MAP_WIDTH",
    "PALETTE",
    "MapRegion",
    "Series",
    "compact",
    "line_chart",
    "nice_ceiling",
    "project",
    "region_map",
]
