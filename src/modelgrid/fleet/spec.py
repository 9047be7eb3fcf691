"""What ``modelgrid fleet up`` deploys, and the Serve config file that deploys the same.

No Ray import here: the spec is validated and the config written on any machine
(``modelgrid fleet config``), then applied with Ray's own ``serve deploy`` or with
``modelgrid fleet up``. The config follows Ray Serve's config file schema
(https://docs.ray.io/en/latest/serve/production-guide/config.html): one application per
model, ``route_prefix`` ``/<model>``, the app builder ``modelgrid.fleet.replica:build_app``
with the model's ``FleetModel`` as its ``args``, and one deployment (``EngineReplica``) with
its autoscaling, ``max_ongoing_requests`` and resources.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEPLOYMENT_NAME = "EngineReplica"
APP_BUILDER = "modelgrid.fleet.replica:build_app"
PREFIX_ROUTER = "modelgrid.fleet.prefix_router:PrefixAffinityRouter"
ENGINE_RESOURCE = "modelgrid_engine"
SESSION_HEADER = "x-session-id"
"""The request header Ray Serve's proxy reads as the request's session id (its default,
``RAY_SERVE_SESSION_ID_HEADER_KEY``): the gateway sends its prefix fingerprint in it
(``prefix_header`` of the topology's replica) and ``PrefixAffinityRouter`` routes by it."""

SLOTS_BY_ENGINE = {"llamacpp": 1, "fake": 8}
"""Requests an engine runs at once: llama.cpp generates one at a time (``engines.llamacpp``);
the scripted engine of tests has no limit, 8 is plenty."""


class FleetModel(BaseModel):
    """One model's Serve application.

    Attributes:
        model: The packaged model id (``modelgrid models``), also the application name and
            its route prefix (``/<model>``).
        engine: ``llamacpp``, or ``fake`` (the scripted engine, for tests).
        min_replicas / max_replicas: Autoscaling bounds (equal: a fixed count).
        slots: Requests a replica runs at once: ``max_ongoing_requests`` and the
            autoscaling target (default: the engine's, ``SLOTS_BY_ENGINE``).
        num_cpus: CPUs Ray reserves for each replica.
        resource: A custom resource each replica needs one unit of: only nodes started with
            it (``ray start --resources '{"modelgrid_engine": N}'``) run replicas.
        prefix_affinity: Route by the gateway's prefix fingerprint (``PrefixAffinityRouter``)
            rather than Serve's default power of two choices.
        n_threads: llama.cpp threads per replica (0: the node's cores).
        fake_token_delay_s: The scripted engine's delay per token (tests).
        fake_fail_after_tokens: The scripted engine fails every request after this many
            tokens (tests: a replica that answers probes but fails real traffic).
        health_check_period_s / health_check_timeout_s: Serve's replica health checks
            (``EngineReplica.check_health``: cheap and on the event loop, so a replica busy
            generating still answers; the timeout is generous, as a slow check is not a
            dead replica).
        downscale_delay_s / upscale_delay_s: How long the load must stay below / above the
            target before Serve removes / adds a replica.
        look_back_period_s / metrics_interval_s: The window Serve averages the ongoing
            requests over, and how often replicas report them.
    """

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]
    engine: Literal["llamacpp", "fake"] = "llamacpp"
    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    slots: Annotated[int, Field(ge=1, le=1024)] | None = None
    num_cpus: Annotated[float, Field(ge=0, le=1024)] = 1.0
    resource: Annotated[str, Field(min_length=1, max_length=100)] | None = ENGINE_RESOURCE
    prefix_affinity: bool = True
    n_threads: Annotated[int, Field(ge=0, le=1024)] = 0
    fake_token_delay_s: Annotated[float, Field(ge=0, le=10)] = 0.0
    fake_fail_after_tokens: Annotated[int, Field(ge=0, le=1000)] | None = None
    health_check_period_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    health_check_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    downscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    upscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 2.0
    look_back_period_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    metrics_interval_s: Annotated[float, Field(gt=0, le=600)] = 1.0

    @model_validator(mode="after")
    def _bounds(self) -> FleetModel:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self

    @property
    def route_prefix(self) -> str:
        return f"/{self.model}"

    @property
    def engine_slots(self) -> int:
        return self.slots or SLOTS_BY_ENGINE[self.engine]

    def deployment_options(self) -> dict[str, Any]:
        """The ``EngineReplica`` deployment's options, as Serve's config file and
        ``Deployment.options`` both take them."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.resource:
            actor["resources"] = {self.resource: 1}
        options: dict[str, Any] = {
            "max_ongoing_requests": self.engine_slots,
            "ray_actor_options": actor,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": 10,
        }
        if self.min_replicas == self.max_replicas:
            options["num_replicas"] = self.min_replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "initial_replicas": max(1, self.min_replicas),
                "target_ongoing_requests": self.engine_slots,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "look_back_period_s": self.look_back_period_s,
                "metrics_interval_s": self.metrics_interval_s,
            }
        if self.prefix_affinity:
            options["request_router_config"] = {"request_router_class": PREFIX_ROUTER}
        return options


def serve_config(
    models: list[FleetModel], *, host: str = "0.0.0.0", port: int = 8000
) -> dict[str, Any]:
    """Ray Serve's config file (as a dict: dump it as YAML) deploying ``models``.

    Args:
        models: One application each (distinct model ids).
        host / port: Where Serve's HTTP proxy listens (on the head node only:
            ``proxy_location: HeadOnly``; the gateway's upstream URLs point there).

    Raises:
        ValueError: a model is named twice.
    """
    names = [m.model for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"a model is named twice: {names}")
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": m.model,
                "route_prefix": m.route_prefix,
                "import_path": APP_BUILDER,
                "args": {"model": m.model, **m.model_dump(mode="json", exclude_defaults=True)},
                "deployments": [{"name": DEPLOYMENT_NAME, **m.deployment_options()}],
            }
            for m in models
        ],
    }


def upstream_url(proxy_url: str, model: str) -> str:
    """The ``base_url`` of a gateway's upstream replica for ``model``'s application:
    ``http://head:8000`` → ``http://head:8000/<model>/v1``."""
    return f"{proxy_url.rstrip('/')}/{model}/v1"


__all__ = [
    "APP_BUILDER",
    "DEPLOYMENT_NAME",
    "ENGINE_RESOURCE",
    "PREFIX_ROUTER",
    "SESSION_HEADER",
    "SLOTS_BY_ENGINE",
    "FleetModel",
    "serve_config",
    "upstream_url",
]
