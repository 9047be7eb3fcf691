"""``deploy/grafana/modelgrid.json`` against a live scrape: every panel's PromQL (and the
template variable's query) names only metrics a running gateway exports after a request."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerFactory

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "modelgrid.json"
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
WANTED = {  # the panels the issue asks for, by the metric each must read
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:inter_token_latency_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket",
    "modelgrid_http_requests_total",
    "vllm:generation_tokens_total",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: label matchers, ranges, ``by``/
    ``without`` lists, functions and keywords left out."""
    e = re.sub(r"\{[^}]*\}", " ", expr)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group().lower() in KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(m.group())
    return names


def test_metric_names_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:x_bucket{model_name=~"$m"}'
        "[$__rate_interval]))) / clamp_min(sum(rate(modelgrid_y_total[5m])), 1e-9)"
    )
    assert metric_names(expr) == {"vllm:x_bucket", "modelgrid_y_total"}


def test_every_panel_names_exported_metrics(server_factory: ServerFactory) -> None:
    server = server_factory()
    r = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {server.api_key}"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": "Hi there"}]},
    )
    assert r.status_code == 200
    text = httpx.get(f"{server.base_url}/metrics").text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}

    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        names = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
        assert names, f"panel {panel['title']!r} reads no metric"
        missing = names - exported
        assert not missing, f"panel {panel['title']!r} reads {sorted(missing)}, not exported"
        used |= names
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            [name] = re.findall(r"label_values\(([^,]+),", variable["definition"])
            assert name in exported
    assert used >= WANTED
