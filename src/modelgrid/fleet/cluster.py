"""Deploy models on a running Ray cluster, report them, take them down (``modelgrid fleet``).

The cluster is the operator's: started with ``ray start`` on each node (the nodes that have
modelgrid and its engine installed carry the ``modelgrid_engine`` resource, see
``docs/fleet.md``). ``up`` connects to it as a driver, starts Serve's HTTP proxy on the head
node (``HeadOnly``: the one URL the gateway's topology names) and runs each model as its own
application (``replica.application``), waiting until its replicas run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from modelgrid.fleet.replica import application
from modelgrid.fleet.spec import DEPLOYMENT_NAME, FleetModel

NAMESPACE = "modelgrid"
PROXY_START_TIMEOUT_S = 120.0
"""How long ``up`` waits for Serve's HTTP proxy, restarts included (Serve's own wait is 60 s)."""


def connect(address: str = "auto") -> None:
    """Join the cluster at ``address`` as a driver (``auto``: the one started on this
    machine; ``ray://host:10001`` through Ray Client).

    Raises:
        ConnectionError: no cluster there (Ray's own error).
    """
    if not ray.is_initialized():
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )


def up(
    models: list[FleetModel],
    *,
    address: str = "auto",
    host: str = "0.0.0.0",
    port: int = 8000,
) -> None:
    """Deploy ``models`` (each its own Serve application at ``/<model>``), replacing an
    application of the same name; returns once each one's replicas run.

    Raises:
        ConnectionError: no cluster at ``address``.
        RuntimeError: an application failed to deploy (Serve's message), or Serve's HTTP
            proxy did not start within ``PROXY_START_TIMEOUT_S``.
    """
    connect(address)
    _start_serve(host, port, PROXY_START_TIMEOUT_S)
    for m in models:
        serve.run(application(m), name=m.model, route_prefix=m.route_prefix, blocking=False)


def _start_serve(host: str, port: int, timeout_s: float) -> None:
    """``serve.start`` and wait until its HTTP proxy is healthy.

    Serve's controller kills a proxy that is not ready within
    ``RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S`` (5 s) and starts another with a longer wait
    (``proxy_state.py``), and the first ``serve.start`` then fails with the killed actor's
    error. A loaded node takes longer than 5 s to start a Python worker, so that error is not
    the end: the controller lives on, and the proxy it restarts is waited for here.

    Raises:
        RuntimeError: no healthy proxy after ``timeout_s`` (the last error or status).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
            break
        except (ray.exceptions.RayActorError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Serve's HTTP proxy did not start: {exc}") from None
    while True:
        proxies = serve.status().proxies
        if any(str(getattr(s, "value", s)) == "HEALTHY" for s in proxies.values()):
            return
        if time.monotonic() > deadline:
            states = ", ".join(str(getattr(s, "value", s)) for s in proxies.values()) or "none"
            raise RuntimeError(f"Serve's HTTP proxy is not healthy after {timeout_s:g} s: {states}")
        time.sleep(0.5)


@dataclass(frozen=True, slots=True)
class AppStatus:
    """One application as ``serve.status()`` reports it.

    Attributes:
        name: The application (the model id).
        status: Serve's application status (``RUNNING``, ``DEPLOYING``, ``UNHEALTHY``…).
        replicas: Replica counts by state (``RUNNING``, ``STARTING``…).
        message: Serve's explanation, if any.
    """

    name: str
    status: str
    replicas: dict[str, int]
    message: str


def status(address: str = "auto") -> list[AppStatus]:
    """The applications on the cluster and their replicas.

    Raises:
        ConnectionError: no cluster at ``address``.
    """
    connect(address)
    out = []
    for name, app in serve.status().applications.items():
        deployment: Any = app.deployments.get(DEPLOYMENT_NAME)
        replicas = (
            {str(getattr(k, "value", k)): int(v) for k, v in deployment.replica_states.items()}
            if deployment is not None
            else {}
        )
        message = app.message or (deployment.message if deployment is not None else "")
        out.append(
            AppStatus(name, str(getattr(app.status, "value", app.status)), replicas, message)
        )
    return out


def down(models: list[str], *, address: str = "auto") -> None:
    """Delete the named applications; none named: shut Serve down on the cluster (every
    application and the proxy; the Ray cluster itself stays).

    Raises:
        ConnectionError: no cluster at ``address``.
    """
    connect(address)
    if models:
        for name in models:
            serve.delete(name)
    else:
        serve.shutdown()  # type: ignore[no-untyped-call]


__all__ = ["NAMESPACE", "AppStatus", "connect", "down", "status", "up"]
