"""The fleet's parts without a cluster: the spec and Serve config, the prefix router's
policy, health from real traffic, and that nothing but ``modelgrid fleet`` imports Ray."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelgrid.fleet.spec import FleetModel, serve_config, upstream_url


def test_the_serve_config_of_one_autoscaled_model() -> None:
    doc = serve_config([FleetModel(model="qwen2.5-coder-0.5b-instruct", max_replicas=3)], port=8123)
    assert doc == {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "0.0.0.0", "port": 8123},
        "applications": [
            {
                "name": "qwen2.5-coder-0.5b-instruct",
                "route_prefix": "/qwen2.5-coder-0.5b-instruct",
                "import_path": "modelgrid.fleet.replica:build_app",
                "args": {"model": "qwen2.5-coder-0.5b-instruct", "max_replicas": 3},
                "deployments": [
                    {
                        "name": "EngineReplica",
                        "max_ongoing_requests": 1,  # llama.cpp: one request at a time
                        "ray_actor_options": {
                            "num_cpus": 1.0,
                            "resources": {"modelgrid_engine": 1},
                        },
                        "health_check_period_s": 2.0,
                        "health_check_timeout_s": 30.0,
                        "graceful_shutdown_timeout_s": 10,
                        "autoscaling_config": {
                            "min_replicas": 1,
                            "max_replicas": 3,
                            "initial_replicas": 1,
                            "target_ongoing_requests": 1,
                            "upscale_delay_s": 2.0,
                            "downscale_delay_s": 30.0,
                            "look_back_period_s": 10.0,
                            "metrics_interval_s": 1.0,
                        },
                        "request_router_config": {
                            "request_router_class": (
                                "modelgrid.fleet.prefix_router:PrefixAffinityRouter"
                            )
                        },
                    }
                ],
            }
        ],
    }


def test_a_fixed_count_without_resource_or_affinity() -> None:
    m = FleetModel(
        model="m", engine="fake", min_replicas=2, max_replicas=2, resource=None,
        prefix_affinity=False,
    )  # fmt: skip
    options = m.deployment_options()
    assert options["num_replicas"] == 2 and options["max_ongoing_requests"] == 8
    assert options["ray_actor_options"] == {"num_cpus": 1.0}
    assert "autoscaling_config" not in options and "request_router_config" not in options


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"min_replicas \(3\) exceeds max_replicas \(2\)"):
        FleetModel(model="m", min_replicas=3, max_replicas=2)
    with pytest.raises(ValidationError, match="model"):
        FleetModel(model="no/slash")
    with pytest.raises(ValueError, match="a model is named twice"):
        serve_config([FleetModel(model="m"), FleetModel(model="m")])


def test_the_gateways_upstream_url() -> None:
    assert upstream_url("http://head:8000/", "qwen") == "http://head:8000/qwen/v1"


def test_fingerprints_parse_or_are_ignored() -> None:
    from modelgrid.engines.upstream import prefix_key
    from modelgrid.fleet.prefix_router import parse_fingerprint

    assert parse_fingerprint(prefix_key((1, 0xFFFF_FFFF_FFFF_FFFF))) == (1, 0xFFFF_FFFF_FFFF_FFFF)
    assert parse_fingerprint("") == ()
    assert parse_fingerprint(None) == ()
    assert parse_fingerprint("zz.1") == ()
    assert parse_fingerprint(".".join(["1"] * 65)) == ()


def test_the_prefix_owner_is_chosen_unless_its_queue_is_too_long() -> None:
    from modelgrid.fleet.prefix_router import choose

    rng = random.Random(0)
    c = ["a", "b", "c"]
    assert choose(c, ("b",), {"a": 0, "b": 2}, 2, rng) == [["b"]]  # waits for b
    # b is 3 longer than the shortest: power of two choices instead
    ranks = choose(c, ("b",), {"a": 0, "b": 3}, 2, rng)
    assert len(ranks) == 1 and len(ranks[0]) == 2
    # the most recent owner that is still a candidate
    assert choose(c, ("gone", "c"), {}, 2, rng) == [["c"]]
    assert choose([], ("a",), {}, 2, rng) == []
    assert sorted(choose(["a", "b"], (), {}, 2, rng)[0]) == ["a", "b"]


class Responses:
    """An ASGI app answering each POST with the next scripted (status, body)."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status, payload = self.answers.pop(0)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": payload})


def call(app: Any, path: str = "/m/v1/chat/completions", method: str = "POST") -> list[Any]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent


def test_failures_of_real_traffic_make_the_replica_unhealthy() -> None:
    from modelgrid.fleet.replica import REPLICA_HEADER, TrafficHealth, WatchedApp

    ok = (200, b"data: {}\n\ndata: [DONE]\n\n")
    error_event = (200, b'data: {"choices": []}\n\ndata: {"error": {"message": "x"}}\n\n')
    health = TrafficHealth(failure_threshold=3)
    app = WatchedApp(Responses((500, b""), (502, b""), ok, (503, b""), error_event), health, "r1")
    sent = call(app)
    assert (REPLICA_HEADER.encode(), b"r1") in sent[0]["headers"]
    call(app)
    assert health.consecutive_failures == 2 and health.healthy
    call(app)  # a success resets the count
    assert health.consecutive_failures == 0
    call(app)
    call(app)  # an error event in a 200 stream is a failure too
    assert health.consecutive_failures == 2
    app.app = Responses((500, b""), (400, b""), (500, b""), (404, b""))
    call(app)
    assert not health.healthy and health.last_failure == "HTTP 500"
    call(app)  # a 4xx is the request's fault, and proves the replica answers
    assert health.healthy
    call(app, "/m/tokenize")  # not generation: not judged
    call(app, "/m/health/ready", method="GET")
    assert health.consecutive_failures == 0


def test_the_gateway_and_the_engine_worker_never_import_ray() -> None:
    code = (
        "import sys, modelgrid.app, modelgrid.worker, modelgrid.cli, modelgrid.cli.serve_cmd;"
        "from modelgrid.cli import app; from typer.main import get_command; get_command(app);"
        "import modelgrid.fleet.spec;"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_config_is_valid_for_serve_and_the_example_file_is_what_the_command_prints() -> None:
    from ray.serve.schema import ServeDeploySchema
    from typer.testing import CliRunner

    from modelgrid.cli import app

    args = ["qwen2.5-coder-0.5b-instruct", "--min-replicas", "1", "--max-replicas", "3"]
    printed = CliRunner().invoke(app, ["fleet", "config", *args, "--threads", "1"])
    assert printed.exit_code == 0, printed.output
    example = Path(__file__).parents[2] / "deploy" / "ray" / "serve-qwen.yaml"
    body = "".join(
        line for line in example.read_text().splitlines(True) if not line.startswith("#")
    )
    assert body == printed.output
    doc = ServeDeploySchema.model_validate(yaml.safe_load(printed.output))
    [application] = doc.applications
    assert application.import_path == "modelgrid.fleet.replica:build_app"
    [deployment] = application.deployments
    assert deployment.max_ongoing_requests == 1
    assert deployment.autoscaling_config["max_replicas"] == 3


def test_up_waits_out_a_proxy_that_serve_killed_while_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Serve kills a proxy not ready within 5 s and starts another; the first ``serve.start``
    then raises the killed actor's error. ``up`` starts again (the controller answers) and
    waits until a proxy is healthy; with none by the deadline it names the states."""
    import ray
    from ray import serve

    from modelgrid.fleet import cluster

    starts: list[dict[str, Any]] = []

    def start(**kwargs: Any) -> None:
        starts.append(kwargs)
        if len(starts) == 1:
            raise ray.exceptions.ActorDiedError()

    states = iter(["STARTING", "STARTING", "HEALTHY"])
    seen: list[str] = []

    def status() -> Any:
        seen.append(next(states))
        return type("Status", (), {"proxies": {"node-a": seen[-1]}})()

    monkeypatch.setattr(serve, "start", start)
    monkeypatch.setattr(serve, "status", status)
    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)
    cluster._start_serve("0.0.0.0", 8123, timeout_s=60)
    assert starts == [{"proxy_location": "HeadOnly",
                       "http_options": {"host": "0.0.0.0", "port": 8123}}] * 2  # fmt: skip
    assert seen == ["STARTING", "STARTING", "HEALTHY"]

    monkeypatch.setattr(serve, "status", lambda: type("S", (), {"proxies": {"n": "UNHEALTHY"}})())
    with pytest.raises(RuntimeError, match=r"not healthy after 0 s: UNHEALTHY"):
        cluster._start_serve("0.0.0.0", 8123, timeout_s=0)
