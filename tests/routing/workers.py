"""Real ``modelgrid engine`` worker processes on loopback ports (routing's failover tests, the
e2e worker tests), and a topology over them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai

from tests.support import REPO, free_port


@dataclass
class Worker:
    """``python -m modelgrid engine --engine E --model M --port P --region R`` (``--token T``
    if given; the scripted engine's token delay if fake)."""

    region: str
    name: str
    model: str = "fake-model"
    token_delay_s: float = 0.02
    port: int = field(default_factory=free_port)
    engine: str = "fake"
    token: str | None = None
    clients: list[openai.OpenAI] = field(default_factory=list)

    def spawn(self, log_dir: Path) -> Worker:
        self.log_dir = log_dir
        self.log = open(log_dir / f"{self.name}.log", "w+b")  # noqa: SIM115
        args = [
            "engine", "--engine", self.engine, "--model", self.model, "--port", str(self.port),
            "--region", self.region,
        ]  # fmt: skip
        if self.engine == "fake":
            args += ["--fake-token-delay-s", str(self.token_delay_s)]
        if self.token is not None:
            args += ["--token", self.token]
        env = dict(os.environ)
        if self.engine == "fake":  # a real engine reads the prepared models from the default
            env["MODELGRID_DATA_DIR"] = str(log_dir / self.name)  # data directory
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelgrid", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self) -> openai.OpenAI:
        """An openai SDK client of this worker (closed when the worker stops)."""
        c = openai.OpenAI(base_url=self.base_url, api_key=self.token or "none", max_retries=0)
        self.clients.append(c)
        return c

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            self.log.seek(0)
            out = self.log.read()
            if b"address already in use" in out:  # the port was free when chosen, not now
                self.log.close()
                self.port = free_port()
                self.spawn(self.log_dir)
                return False
            raise RuntimeError(f"worker {self.name} exited: {out[-2000:]!r}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def chat_requests(self) -> int:
        """Chat requests this worker has answered (from its Prometheus metrics)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("modelgrid_http_requests_total{") and "chat/completions" in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, connections drop mid-stream."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        while self.clients:
            self.clients.pop().close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def start_all(workers: Iterable[Worker], log_dir: Path, timeout_s: float = 120) -> list[Worker]:
    """Spawn every worker at once (their imports overlap), then wait until all are ready."""
    started = [w.spawn(log_dir) for w in workers]
    deadline = time.monotonic() + timeout_s
    pending = list(started)
    try:
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready: {[w.name for w in pending]}")
            pending = [w for w in pending if not w.ready()]
            time.sleep(0.1)
    except BaseException:
        for w in started:
            w.stop()
        raise
    return started


def topology_toml(gateway: str, workers: list[Worker], latency: dict[str, dict[str, float]]) -> str:
    """A topology file with one deployment of each worker's model per region."""
    regions = list(dict.fromkeys(w.region for w in workers))
    out = [f"gateway_region = {json.dumps(gateway)}"]
    for r in regions:
        out += ["[[regions]]", f"id = {json.dumps(r)}"]
    out.append("[latency_ms]")
    for a, row in latency.items():
        cells = ", ".join(f"{json.dumps(b)} = {ms}" for b, ms in row.items())
        out.append(f"{json.dumps(a)} = {{ {cells} }}")
    for r in regions:
        out += ["[[deployments]]", 'model = "fake-model"', f"region = {json.dumps(r)}"]
        for w in workers:
            if w.region == r:
                out += [
                    "[[deployments.replicas]]",
                    f"id = {json.dumps(w.name)}",
                    f"base_url = {json.dumps(w.base_url)}",
                ]
    return "\n".join(out) + "\n"
