"""The console's SVG renderer (``console.charts``) and the overview's series: exact points,
labels, gaps, escaping; and the map's projection."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest

from modelgrid.console import charts
from modelgrid.console.pages.overview import RANGES, buckets, build
from modelgrid.storage.models import TTFT_BUCKET_COLUMNS
from modelgrid.tenancy.usage_reports import SeriesPoint

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # well-formed XML, or this raises


@pytest.mark.parametrize(
    ("value", "top"),
    [
        (0, 1),
        (-3, 1),
        (1, 1),
        (1.2, 2),
        (2, 2),
        (2.1, 2.5),
        (3, 5),
        (7, 10),
        (10, 10),
        (11, 20),
        (0.03, 0.05),
        (240, 250),
        (999, 1000),
        (1001, 2000),
    ],
)
def test_nice_ceiling(value: float, top: float) -> None:
    assert charts.nice_ceiling(value) == pytest.approx(top)


def test_compact_labels() -> None:
    assert [charts.compact(v) for v in (0, 12, 0.25, 1234, 2_500_000, 3e9)] == [
        "0",
        "12",
        "0.25",
        "1.23k",
        "2.5M",
        "3G",
    ]


def test_line_chart_points_are_exact() -> None:
    # 640 x 180: plot x 56..630 (574 wide), y 10..158 (148 high); top = nice(8) = 10
    svg = charts.line_chart(
        ["a", "b", "c"], [charts.Series("all", [0, 5, 8])], title="Requests", chart_id="c1"
    )
    root = parse(svg)
    assert root.get("id") == "c1" and root.get("data-top") == "10"
    assert root.find(f"{SVG}title").text == "Requests"  # type: ignore[union-attr]
    (line,) = root.findall(f"{SVG}polyline")
    assert line.get("data-series") == "all"
    assert line.get("points") == "56,158 343,84 630,39.6"
    ylabels = [t.text for t in root.findall(f"{SVG}text[@class='ylabel']")]
    assert ylabels == ["0", "10"]
    xlabels = [(t.text, t.get("x")) for t in root.findall(f"{SVG}text[@class='xlabel']")]
    assert xlabels == [("a", "56"), ("b", "343"), ("c", "630")]


def test_gaps_split_lines_and_lone_points_are_dots() -> None:
    svg = charts.line_chart(
        ["1", "2", "3", "4", "5"],
        [charts.Series("p95", [100, 200, None, 50, None])],
        title="TTFT",
    )
    root = parse(svg)
    lines = root.findall(f"{SVG}polyline")
    assert [ln.get("points") for ln in lines] == ["56,84 199.5,10"]  # top = 200
    (dot,) = root.findall(f"{SVG}circle")
    assert (dot.get("cx"), dot.get("cy"), dot.get("data-series")) == ("486.5", "121", "p95")


def test_several_series_take_the_palette_in_order_and_names_are_escaped() -> None:
    svg = charts.line_chart(
        ["x", "y"],
        [charts.Series("<b>m1</b>", [1, 2]), charts.Series('m"2', [2, 1])],
        title="A & B",
    )
    assert "<b>" not in svg and "&lt;b&gt;m1&lt;/b&gt;" in svg
    root = parse(svg)
    strokes = [ln.get("stroke") for ln in root.findall(f"{SVG}polyline")]
    assert strokes == list(charts.PALETTE[:2])
    assert root.get("aria-label") == "A & B"


def test_one_bucket_is_centred_and_no_data_says_so() -> None:
    root = parse(charts.line_chart(["only"], [charts.Series("all", [3])], title="t"))
    (dot,) = root.findall(f"{SVG}circle")
    assert dot.get("cx") == "343"
    empty = parse(charts.line_chart(["a", "b"], [charts.Series("all", [None, None])], title="t"))
    assert empty.find(f"{SVG}text[@class='empty']").text == "no data"  # type: ignore[union-attr]
    assert empty.findall(f"{SVG}polyline") == []
    with pytest.raises(ValueError, match="has 1 values for 2"):
        charts.line_chart(["a", "b"], [charts.Series("all", [1])], title="t")


def test_region_map_projects_and_marks_health() -> None:
    assert charts.project(0, 0) == (360, 180)
    assert charts.project(90, -180) == (0, 0)
    assert charts.project(-90, 180) == (720, 360)
    svg = charts.region_map(
        [
            charts.MapRegion("eu-west", 53.3, -6.3, 2, 2),
            charts.MapRegion("us-east", 38.9, -77.0, 1, 2),
            charts.MapRegion("cn-north", 39.9, 116.4, 0, 1),
            charts.MapRegion("local", None, None, 1, 1),
        ]
    )
    root = parse(svg)
    groups = {g.get("data-region"): g for g in root.findall(f"{SVG}g")}
    assert {k: g.get("class") for k, g in groups.items()} == {
        "eu-west": "region ok",
        "us-east": "region degraded",
        "cn-north": "region down",
        "local": "region ok",
    }
    eu = groups["eu-west"].find(f"{SVG}circle")
    assert (eu.get("cx"), eu.get("cy")) == ("347.4", "73.4")  # type: ignore[union-attr]
    assert groups["us-east"].find(f"{SVG}text").text == "us-east 1/2"  # type: ignore[union-attr]
    local = groups["local"].find(f"{SVG}circle")
    assert (local.get("cx"), local.get("cy")) == ("360", "380")  # type: ignore[union-attr]
    assert root.get("viewBox") == "0 0 720 400"  # a row under the map for "local"
    row = parse(charts.region_map([charts.MapRegion("local", None, None, 0, 0)]))
    assert row.get("viewBox") == "0 0 720 40" and row.find(f"{SVG}rect") is None
    (dot,) = row.findall(f"{SVG}g/{SVG}circle")
    assert (dot.get("cx"), dot.get("cy")) == ("360", "20")
    assert charts.MapRegion("x", 0, 0, 0, 0).health == "empty"
    assert charts.MapRegion("x", 0, 0, 2, 2, enabled=False).health == "down"


def _point(at: datetime, group: str | None, requests: int, ttft_bucket: int | None) -> SeriesPoint:
    hist = [0] * len(TTFT_BUCKET_COLUMNS)
    if ttft_bucket is not None:
        hist[ttft_bucket] = requests
    return SeriesPoint(
        at,
        group,
        requests=requests,
        errors=1,
        prompt_tokens=10 * requests,
        completion_tokens=requests,
        cost_micros={"USD": 1_500_000},
        ttft_histogram=hist,
    )


def test_overview_series_fill_missing_buckets() -> None:
    now = datetime(2026, 12, 6, 10, 30, 15, tzinfo=UTC)
    starts = buckets(now, RANGES["24h"])
    assert len(starts) == 24
    assert starts[-1] == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert starts[0] == starts[-1] - timedelta(hours=23)
    points = [
        _point(starts[-1], "m1", 4, 0),
        _point(starts[-3], "m1", 2, None),
        _point(starts[-1], "m2", 1, 2),
    ]
    drawn, totals, titles = build(points, starts, RANGES["24h"])
    assert titles["spend"] == "Spend (USD)" and titles["requests"] == "Requests"
    assert [(t.group, t.requests, t.errors, t.prompt_tokens, t.cost_micros) for t in totals] == [
        ("m1", 6, 2, 60, {"USD": 3_000_000}),
        ("m2", 1, 1, 10, {"USD": 1_500_000}),
    ]
    requests = parse(drawn["requests"])
    m1 = requests.find(f"{SVG}polyline[@data-series='m1']")
    pts = m1.get("points").split()  # type: ignore[union-attr]
    assert len(pts) == 24  # every hour drawn, 0 where there was no usage
    assert pts[-1] == "630,39.6" and pts[-3].endswith(",98.8") and pts[0].endswith(",158")
    p50 = parse(drawn["p50"])  # only buckets with a TTFT: a lone dot for each group
    assert {c.get("data-series") for c in p50.findall(f"{SVG}circle")} == {"m1", "m2"}
    assert re.search(r">10:00<", drawn["requests"])


def test_spend_is_charted_in_the_currency_most_spent_never_added_across_currencies() -> None:
    starts = buckets(datetime(2026, 12, 6, 10, 30, tzinfo=UTC), RANGES["24h"])
    usd = _point(starts[-1], "m1", 1, 0)
    eur = _point(starts[-1], "m2", 1, 0)
    eur.cost_micros = {"EUR": 9_000_000}
    drawn, totals, titles = build([usd, eur], starts, RANGES["24h"])
    assert titles["spend"] == "Spend (EUR) (other currencies: see the totals)"
    assert f"<title>{titles['spend']}</title>" in drawn["spend"]
    spend = parse(drawn["spend"])
    m1 = spend.find(f"{SVG}polyline[@data-series='m1']")
    m2 = spend.find(f"{SVG}polyline[@data-series='m2']")
    # m1 spent only USD: 0 on the EUR chart everywhere (the flat baseline), m2 peaks at the end
    assert {p.split(",")[1] for p in m1.get("points").split()} == {"158"}  # type: ignore[union-attr]
    assert m2.get("points").split()[-1].split(",")[1] != "158"  # type: ignore[union-attr]
    assert [t.cost_micros for t in totals] == [{"USD": 1_500_000}, {"EUR": 9_000_000}]
