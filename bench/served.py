"""``python -m modelgrid serve`` for the benchmarks: a free loopback port, a throwaway SQLite
database, the first-start API key read from its stdout. Shared by ``engine_overhead.py`` and
``embeddings_throughput.py`` (run as scripts, so ``bench/`` is on ``sys.path``)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


class Server:
    """Args: tmp: a folder for the database and the server's log; env: settings to add
    (``MODELGRID_…`` variables); command: what follows the interpreter, before ``--port``
    (``("-m", "tests.fake_gateway")`` serves the scripted engine; run from ``cwd``, the
    repository root)."""

    def __init__(
        self,
        tmp: Path,
        env: dict[str, str],
        command: tuple[str, ...] = ("-m", "modelgrid", "serve"),
        cwd: Path | None = None,
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        full_env = {
            **os.environ,
            "MODELGRID_DATABASE__URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
            **env,
        }
        self.log_path = tmp / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *command, "--port", str(self.port)],
            env=full_env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()  # access log goes to stdout
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    def wait_ready(self, timeout_s: float = 300, key_line: bool = True) -> str:
        """Wait for ``/health/ready``; returns the API key printed at first start (``""``
        without ``key_line``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready")
        if not key_line:
            return ""
        for line in self.lines:
            m = re.match(r"API key\s*:\s*(mg-\S+)", line)
            if m:
                return m.group(1)
        raise RuntimeError("no 'API key   : mg-...' line on the server's stdout")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            self._log.close()
