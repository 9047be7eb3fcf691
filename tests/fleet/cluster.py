"""A real 3-node Ray cluster on this machine, for tests and ``bench/fleet.py``.

``ray start --head`` (Serve's controller and HTTP proxy; no engine resource) and two
``ray start --address`` worker nodes carrying ``modelgrid_engine``: Serve's replicas run on
the workers only, so killing a worker node kills replicas. Small: 1 CPU a node (replicas of
the scripted engine reserve 0.1), 80 MB object stores, no dashboard, a short temp dir under
/tmp. ``stop`` runs ``ray stop --force`` whatever happened. Models are deployed through the
real CLI (``modelgrid fleet up`` in a subprocess): a test process never joins the cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port

BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    "MODELGRID_ENGINE__N_THREADS": "1",
}
OBJECT_STORE_BYTES = 80 * 1024 * 1024


def _ray(*args: str, timeout_s: float = 90) -> str:
    done = subprocess.run(
        [str(BIN / "ray"), *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class RayCluster:
    """The cluster (see the module docstring). ``proxy_url``: Serve's HTTP proxy."""

    gcs_port: int = field(default_factory=free_port)
    serve_port: int = field(default_factory=free_port)
    temp_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    workers: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    def start(self) -> RayCluster:
        _ray(
            "start",
            "--head",
            f"--port={self.gcs_port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={self.temp_dir}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        )
        self.add_worker()
        self.add_worker()
        return self

    def add_worker(self) -> None:
        """One more worker node with the engine resource (4 replicas' worth)."""
        self.workers += 1
        _ray(
            "start",
            f"--address={self.address}",
            "--num-cpus=1",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            '--resources={"modelgrid_engine": 4}',
        )

    def stop(self) -> None:
        try:
            _ray("stop", "--force", timeout_s=60)
        finally:
            subprocess.run(["rm", "-rf", self.temp_dir], check=False)

    def fleet(self, *args: str, timeout_s: float = 120) -> str:
        """``modelgrid fleet ARGS --address …`` (``up`` also gets ``--port``)."""
        extra = [f"--port={self.serve_port}"] if args[0] == "up" else []
        done = subprocess.run(
            [str(BIN / "modelgrid"), "fleet", *args, f"--address={self.address}", *extra],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise RuntimeError(f"modelgrid fleet {args} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def up_fake(self, app: str, *args: str) -> str:
        """Deploy the scripted engine as ``app`` (0.1 CPU a replica)."""
        return self.fleet("up", app, "--engine=fake", "--num-cpus=0.1", *args)

    @contextlib.contextmanager
    def fake_app(self, app: str, *args: str) -> Iterator[str]:
        """``up_fake`` for the block, then ``fleet down`` (whatever happened): what ``up``
        printed."""
        try:
            yield self.up_fake(app, *args)
        finally:
            self.fleet("down", app)


def replica_pids(app: str) -> list[int]:
    """The processes of ``app``'s Serve replicas (Ray titles them
    ``ray::ServeReplica:<app>:EngineReplica``)."""
    done = subprocess.run(
        ["pgrep", "-f", f"^ray::ServeReplica:{app}:EngineReplica"], capture_output=True, text=True
    )
    return sorted(int(p) for p in done.stdout.split())


def wait_for_replicas(
    app: str, count: int, timeout_s: float, *, without: set[int] = frozenset()
) -> tuple[list[int], float]:
    """Wait until ``app`` has ``count`` replica processes (none of them in ``without``);
    returns them and the seconds waited.

    Raises:
        TimeoutError: not within ``timeout_s``.
    """
    started = time.monotonic()
    while True:
        pids = [p for p in replica_pids(app) if p not in without]
        if len(pids) == count:
            return pids, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{app}: {len(pids)} replicas, not {count}, after {timeout_s} s")
        time.sleep(0.1)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def kill_node_of(pid: int) -> list[int]:
    """SIGKILL the raylet that started ``pid`` (a worker node) and every process it
    started: the node dies as a machine would. Returns the killed pids."""
    raylet = parent_of(pid)
    if b"raylet" not in Path(f"/proc/{raylet}/cmdline").read_bytes():
        raise RuntimeError(f"the parent of {pid} is not a raylet")
    children = subprocess.run(
        ["pgrep", "-P", str(raylet)], capture_output=True, text=True
    ).stdout.split()
    killed = [raylet, *(int(c) for c in children)]
    for p in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return killed
