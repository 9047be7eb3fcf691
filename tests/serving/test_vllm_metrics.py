"""vLLM's Prometheus names beside modelgrid's: names, types, labels, buckets and values."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelgrid.serving.metrics import Metrics
from modelgrid.serving.vllm_metrics import (
    ITL_BUCKETS_S,
    REQUEST_BUCKETS_S,
    TTFT_BUCKETS_S,
    Buckets,
)


def scrape(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> sorted labels -> value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def at(lab: tuple[tuple[str, str], ...], le: str) -> tuple[tuple[str, str], ...]:
    """``lab`` and ``le=le``, in ``scrape``'s order."""
    return tuple(sorted((*lab, ("le", le))))


def types(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(metrics.render().decode())}


def test_the_buckets_are_vllms() -> None:
    # vllm/v1/metrics/loggers.py, PrometheusStatLogger: 22, 19 and 21 boundaries
    assert len(TTFT_BUCKETS_S) == 22 and TTFT_BUCKETS_S[0] == 0.001 and TTFT_BUCKETS_S[-1] == 2560.0
    assert len(ITL_BUCKETS_S) == 19 and ITL_BUCKETS_S[0] == 0.01 and ITL_BUCKETS_S[-1] == 80.0
    assert len(REQUEST_BUCKETS_S) == 21 and REQUEST_BUCKETS_S[0] == 0.3
    assert REQUEST_BUCKETS_S[-1] == 7680.0


def test_buckets_count_at_or_below_each_bound() -> None:
    b = Buckets((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        b.observe(v)
    assert b.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert b.sum == 8.65


def test_one_call_in_vllms_names() -> None:
    m = Metrics()
    m.vllm.record("qwen", "eu", "eu-1", "ws1", 100, 11, 64, 0.05, 1.05, 0.002)
    m.vllm.record("qwen", "eu", "eu-1", "ws2", 10, 1, 0, 0.2, 0.25, None)
    got = scrape(m)
    lab = (("model_name", "qwen"), ("region", "eu"), ("replica", "eu-1"))
    assert got["vllm:prompt_tokens_total"] == {lab: 110.0}
    assert got["vllm:generation_tokens_total"] == {lab: 12.0}
    assert got["vllm:prefix_cache_queries_total"] == {lab: 110.0}
    assert got["vllm:prefix_cache_hits_total"] == {lab: 64.0}
    assert got["vllm:time_to_first_token_seconds_count"] == {lab: 2.0}
    assert got["vllm:time_to_first_token_seconds_bucket"][at(lab, "0.06")] == 1.0
    assert got["vllm:time_to_first_token_seconds_bucket"][at(lab, "0.25")] == 2.0
    # one request's mean gap: (1.05 - 0.05) / (11 - 1) = 0.1 s; the 1-token call has none
    assert got["vllm:inter_token_latency_seconds_count"] == {lab: 1.0}
    assert got["vllm:inter_token_latency_seconds_sum"] == {lab: 0.1}
    assert got["vllm:inter_token_latency_seconds_bucket"][at(lab, "0.075")] == 0.0
    assert got["vllm:inter_token_latency_seconds_bucket"][at(lab, "0.1")] == 1.0
    assert got["vllm:e2e_request_latency_seconds_count"] == {lab: 2.0}
    assert got["vllm:e2e_request_latency_seconds_bucket"][at(lab, "0.3")] == 1.0
    assert got["vllm:e2e_request_latency_seconds_bucket"][at(lab, "1.5")] == 2.0
    assert got["vllm:request_queue_time_seconds_count"] == {lab: 1.0}
    assert got["vllm:request_queue_time_seconds_sum"] == {lab: 0.002}
    t = types(m)
    assert t["vllm:time_to_first_token_seconds"] == "histogram"
    assert t["vllm:prompt_tokens"] == "counter"
    assert t["vllm:num_requests_running"] == "gauge"
    assert t["vllm:num_requests_waiting"] == "gauge"


def test_the_workspace_label_only_where_turned_on() -> None:
    m = Metrics(workspace_label=True)
    m.vllm.record("qwen", "eu", "eu-1", "ws1", 5, 2, 0, 0.01, 0.02, 0.0)
    m.vllm.record("qwen", "eu", "eu-1", "ws2", 7, 3, 0, 0.01, 0.02, 0.0)
    got = scrape(m)["vllm:prompt_tokens_total"]
    base = (("model_name", "qwen"), ("region", "eu"), ("replica", "eu-1"))
    assert got == {(*base, ("workspace", "ws1")): 5.0, (*base, ("workspace", "ws2")): 7.0}


def test_running_and_waiting_are_read_at_scrape_time() -> None:
    m = Metrics()
    waiting = [3]
    m.watch_queue("qwen", lambda: waiting[0])
    m.of("qwen").running += 2
    got = scrape(m)
    assert got["vllm:num_requests_running"] == {(("model_name", "qwen"),): 2.0}
    assert got["vllm:num_requests_waiting"] == {(("model_name", "qwen"),): 3.0}
    waiting[0] = 0
    m.of("qwen").running -= 1
    got = scrape(m)
    assert got["vllm:num_requests_running"] == {(("model_name", "qwen"),): 1.0}
    assert got["vllm:num_requests_waiting"] == {(("model_name", "qwen"),): 0.0}
    assert "modelgrid_requests_running" in got  # beside modelgrid's own names
