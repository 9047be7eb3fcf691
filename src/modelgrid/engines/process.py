"""A supervised engine process: one ``modelgrid engine`` worker that the gateway starts,
watches and restarts, so that a native crash, an OOM kill or a hang of llama.cpp never takes
the gateway down (vLLM V1 splits its API server from the engine core the same way; Ollama
runs a runner subprocess per model).

``EngineProcess`` owns the child:

- **start**: ``python -X faulthandler -m modelgrid engine --model M --port P`` on a loopback
  port chosen here, with a random token (in the child's environment, never on its command
  line) that only this gateway knows; ready when its ``/health/ready`` answers 200.
- **watch**: the child's exit is seen at once (``waitpid``); its stderr is forwarded to the
  gateway's log and the last lines are kept for the crash report. Every
  ``liveness_interval_s`` its ``/health/live`` is asked; ``liveness_failures`` misses in a row
  (a hung event loop) or no token for ``hang_timeout_s`` while requests wait for one
  (``ProcessEngine`` reports progress) get the child killed (SIGKILL) and restarted.
- **restart** with back-off: ``backoff_initial_s``, doubled after each death that came within
  ``stable_after_s`` of its start, up to ``backoff_max_s``; a run that lasted longer resets it.
  Each death is logged with its signal; ``crash_loop_deaths`` quick deaths in a row are a crash
  loop, logged once (error level) with the signal and what to do.
- **stop**: SIGTERM, then SIGKILL after ``stop_timeout_s``. The child also dies with the
  gateway (``die_with_parent``: Linux's parent-death signal plus a watch on its parent's pid),
  so a ``kill -9`` of the gateway leaves no orphan holding the model's memory.

``status()`` is what ``/health/ready`` and ``/metrics`` show (state, pid, restarts, last exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import aiohttp

from modelgrid.core.errors import EngineError, EngineRestartingError

log = logging.getLogger("modelgrid.engines.process")

TOKEN_ENV = "MODELGRID_WORKER_TOKEN"  # read by ``modelgrid engine --token`` (Typer envvar)
_PR_SET_PDEATHSIG = 1


class ProcessState(StrEnum):
    STARTING = "starting"  # first start: loading the model
    READY = "ready"
    RESTARTING = "restarting"  # died; coming back after the back-off
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """A snapshot of a supervised engine process.

    Attributes:
        state: See ``ProcessState``.
        pid: The running child's pid (``None`` between runs).
        restarts: Children started after the first.
        last_exit: How the last child ended (``SIGKILL``, ``exit 1``), ``None`` if none has.
        last_exit_reason: Why the gateway killed it, if it did (``hung``, ``no token``).
        crash_loop: The last ``crash_loop_deaths`` runs each died within ``stable_after_s``.
        retry_in_s: Seconds until the next start while restarting (0 otherwise).
    """

    state: ProcessState
    pid: int | None
    restarts: int
    last_exit: str | None
    last_exit_reason: str | None
    crash_loop: bool
    retry_in_s: float

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_reason": self.last_exit_reason,
            "crash_loop": self.crash_loop,
            "retry_in_s": round(self.retry_in_s, 3),
        }


def exit_name(returncode: int) -> str:
    """``-9`` → ``SIGKILL``; ``1`` → ``exit 1``."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def advice(returncode: int, reason: str | None = None) -> str:
    """What to do about a child that keeps dying this way (``reason``: why the gateway
    killed it, when it did)."""
    if reason and reason.startswith("no token"):
        return (
            "the gateway killed it as hung; if its prompts legitimately take that long, raise "
            "MODELGRID_ENGINE__HANG_TIMEOUT_S"
        )
    if reason:
        return f"the gateway killed it ({reason})"
    if returncode in (-signal.SIGILL, -signal.SIGSEGV, -signal.SIGBUS):
        return (
            "the llama.cpp build does not run on this CPU: run `python scripts/llama_build.py "
            "ensure --level avx2` in the checkout (the safest instruction set), or "
            "`.venv/bin/modelgrid models check` to see the fault"
        )
    if returncode == -signal.SIGKILL:
        return "it was killed (out of memory?): lower MODELGRID_ENGINE__N_CTX or free memory"
    return "see the engine's last log lines above"


def child_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat``; 0 where there is
    no ``/proc``: hangs are then judged by the time without a token alone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(host: str) -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent(parent_pid: int) -> None:
    """In a child: be killed when the parent dies (``PR_SET_PDEATHSIG``, Linux) and, as a
    fallback, exit when the parent's pid is no longer ours (a daemon thread checks each
    second)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class EngineProcess:
    """Starts, watches and restarts one engine worker (see the module docstring).

    Args:
        model_id: The model the worker serves (logs, status).
        args: The worker's command after ``modelgrid engine``, without ``--host``/``--port``
            (``["--model", "qwen…"]``).
        env: Extra environment for the child (its settings).
        host: Loopback address the child binds.
        ready_timeout_s: Longest a start may take (model load) before it counts as a failure.
        liveness_interval_s / liveness_timeout_s / liveness_failures: The ``/health/live``
            check of a running child.
        hang_timeout_s: No token for this long while requests wait: the child is killed.
        backoff_initial_s / backoff_max_s / stable_after_s / crash_loop_deaths: Restarts.
        stop_timeout_s: Grace period between SIGTERM and SIGKILL on shutdown.
        python: The interpreter (default: this one).
    """

    def __init__(
        self,
        model_id: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 600.0,
        liveness_interval_s: float = 1.0,
        liveness_timeout_s: float = 2.0,
        liveness_failures: int = 5,
        hang_timeout_s: float = 60.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stable_after_s: float = 30.0,
        crash_loop_deaths: int = 3,
        stop_timeout_s: float = 10.0,
        python: str = sys.executable,
    ) -> None:
        self.model_id = model_id
        self.args = list(args)
        self.env = dict(env or {})
        self.host = host
        self.port = free_port(host)
        self.token = secrets.token_urlsafe(32)
        self.ready_timeout_s = ready_timeout_s
        self.liveness_interval_s = liveness_interval_s
        self.liveness_timeout_s = liveness_timeout_s
        self.liveness_failures = liveness_failures
        self.hang_timeout_s = hang_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.crash_loop_deaths = crash_loop_deaths
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        self.state = ProcessState.STOPPED
        self.restarts = 0
        self.incarnation = 0  # children started so far; a request sent to an earlier one died
        self.last_exit: int | None = None
        self.last_exit_reason: str | None = None
        self.stalled_s: Callable[[], float] = lambda: 0.0  # set by ``ProcessEngine``
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._backoff_s = backoff_initial_s
        self._next_start_at = 0.0
        self._quick_deaths = 0
        self._loop_reported = False
        self._tail: deque[str] = deque(maxlen=20)
        self._kill_reason: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._first_outcome: asyncio.Future[str | None] | None = None

    # --- what the gateway reads ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ready(self) -> bool:
        return self.state is ProcessState.READY

    @property
    def crash_loop(self) -> bool:
        return self._quick_deaths >= self.crash_loop_deaths

    def retry_in_s(self) -> float:
        if self.state is not ProcessState.RESTARTING:
            return 0.0
        return max(0.0, self._next_start_at - time.monotonic())

    def status(self) -> ProcessStatus:
        proc = self._proc
        return ProcessStatus(
            state=self.state,
            pid=proc.pid if proc is not None and proc.returncode is None else None,
            restarts=self.restarts,
            last_exit=exit_name(self.last_exit) if self.last_exit is not None else None,
            last_exit_reason=self.last_exit_reason,
            crash_loop=self.crash_loop,
            retry_in_s=self.retry_in_s(),
        )

    @property
    def serving(self) -> bool:
        """Ready, or restarting after a death that is not part of a crash loop (requests
        wait for the restart): what the engines over it call ``ready``."""
        return self.ready or (self.state is ProcessState.RESTARTING and not self.crash_loop)

    def restarting_error(self) -> EngineRestartingError:
        """The 503 for a request that found no child ready in time (``Retry-After``: when
        the next start is due, at least 1 s)."""
        how = f" ({exit_name(self.last_exit)})" if self.last_exit is not None else ""
        return EngineRestartingError(
            f"The engine of '{self.model_id}' is restarting after its process died{how}; "
            "try again shortly.",
            retry_after_s=max(1.0, self.retry_in_s()),
        )

    async def died_since(self, incarnation: int, within_s: float = 1.0) -> bool:
        """Whether the child of ``incarnation`` has died: a dropped connection and the
        child's exit are seen at most ``within_s`` apart."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.incarnation != incarnation or self.state is not ProcessState.READY:
                return True
            await asyncio.sleep(0.02)
        return False

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until a child is ready (``False`` after ``timeout_s`` or once stopped)."""
        if self.ready:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.ready

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start supervising and wait for the first child to be ready.

        Raises:
            EngineError: the first children died (a crash loop) or did not get ready
                within ``ready_timeout_s``; supervision goes on, with back-off.
        """
        if self._task is None:
            self.state = ProcessState.STARTING
            self._first_outcome = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._supervise(), name=f"engine-{self.model_id}")
        assert self._first_outcome is not None
        failure = await asyncio.shield(self._first_outcome)
        if failure is not None:
            raise EngineError(failure, code="engine_start_failed")

    def kill(self, reason: str) -> None:
        """SIGKILL the running child (it is restarted); ``reason`` goes into the log."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._kill_reason = reason
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def aclose(self) -> None:
        """Stop supervising; SIGTERM the child, SIGKILL it after ``stop_timeout_s``."""
        task, self._task = self._task, None
        self.state = ProcessState.STOPPED
        self._ready.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_child()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _stop_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # --- supervision -------------------------------------------------------------------------

    def _first(self, failure: str | None) -> None:
        if self._first_outcome is not None and not self._first_outcome.done():
            self._first_outcome.set_result(failure)

    async def _supervise(self) -> None:
        while True:
            started = time.monotonic()
            returncode = await self._run_once()
            lived_s = time.monotonic() - started
            if self.state is not ProcessState.READY:
                # It never got ready: its port may have been taken meanwhile (it was only
                # free when chosen), so the next child gets a new one.
                self.port = free_port(self.host)
            self._ready.clear()
            self.last_exit, self.last_exit_reason = returncode, self._kill_reason
            self._kill_reason = None
            if lived_s < self.stable_after_s:
                self._quick_deaths += 1
                self._backoff_s = min(self.backoff_max_s, self._backoff_s * 2)
            else:
                self._quick_deaths, self._loop_reported = 1, False
                self._backoff_s = self.backoff_initial_s
            delay = self._backoff_s if self._quick_deaths > 1 else self.backoff_initial_s
            self._report_death(returncode, lived_s, delay)
            if self.crash_loop:
                self._first(
                    f"the engine process died {self._quick_deaths} times "
                    f"({exit_name(returncode)}); {advice(returncode, self.last_exit_reason)}"
                )
            self.state = ProcessState.RESTARTING
            self._next_start_at = time.monotonic() + delay
            await asyncio.sleep(delay)
            self.restarts += 1

    async def _run_once(self) -> int:
        """Start a child, wait for it to be ready, watch it; its exit status."""
        self._tail.clear()
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-X",
            "faulthandler",
            "-m",
            "modelgrid",
            "engine",
            *self.args,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--parent-pid",
            str(os.getpid()),
            env={**os.environ, **self.env, TOKEN_ENV: self.token},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group)
            # reaches the gateway alone, which drains its streams and then stops the child;
            # the child still dies with the gateway (``die_with_parent``).
            start_new_session=True,
        )
        self._proc = proc
        self.incarnation += 1
        reader = asyncio.create_task(self._forward(proc), name=f"engine-log-{self.model_id}")
        watcher = asyncio.create_task(self._watch(proc), name=f"engine-watch-{self.model_id}")
        try:
            returncode = await proc.wait()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 1.0)
        return returncode

    async def _forward(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._tail.append(line)
                log.warning("engine %s: %s", self.model_id, line)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Ready check, then liveness and progress checks until the child exits."""
        deadline = time.monotonic() + self.ready_timeout_s
        while not await self._get("/health/ready", 200):
            if time.monotonic() > deadline:
                self.kill(f"not ready within {self.ready_timeout_s:.0f} s")
                return
            await asyncio.sleep(0.05)
        self.state = ProcessState.READY
        self._ready.set()
        self._first(None)
        if self.restarts:
            log.warning(
                "engine %s: ready again (pid %s, restart %d)",
                self.model_id,
                proc.pid,
                self.restarts,
            )
        ready_at = time.monotonic()
        misses = 0
        stall_cpu_s = child_cpu_s(proc.pid)  # the child's CPU time when the stall began
        last_stalled = 0.0
        while proc.returncode is None:
            await asyncio.sleep(self.liveness_interval_s)
            if self._quick_deaths and time.monotonic() - ready_at >= self.stable_after_s:
                self._quick_deaths, self._loop_reported = 0, False  # stable: no crash loop
            stalled = min(self.stalled_s(), time.monotonic() - ready_at)
            cpu_s = child_cpu_s(proc.pid)
            if stalled < last_stalled or stalled == 0.0:
                stall_cpu_s = cpu_s
            last_stalled = stalled
            if self._hung(stalled, cpu_s - stall_cpu_s):
                self.kill(
                    f"no token for {stalled:.0f} s, {cpu_s - stall_cpu_s:.1f} CPU s used meanwhile"
                )
                return
            misses = 0 if await self._get("/health/live", 200) else misses + 1
            if misses >= self.liveness_failures:
                self.kill(f"no answer to {misses} liveness checks")
                return

    def _hung(self, stalled_s: float, cpu_s: float) -> bool:
        """No token for ``hang_timeout_s`` while requests wait, and the child not computing
        either (under a tenth of a core on average: stopped, deadlocked, waiting on nothing)
        — a long prompt's prefill burns CPU without producing a token, and is no hang. A
        child that computes for ten times the timeout without a token is hung all the same."""
        if stalled_s < self.hang_timeout_s:
            return False
        return cpu_s < 0.1 * stalled_s or stalled_s >= 10 * self.hang_timeout_s

    async def _get(self, path: str, want: int) -> bool:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.liveness_timeout_s), trust_env=False
            )
        try:
            async with self._session.get(f"http://{self.host}:{self.port}{path}") as r:
                await r.read()
                return r.status == want
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def _report_death(self, returncode: int, lived_s: float, delay_s: float) -> None:
        how = exit_name(returncode)
        why = f" ({self.last_exit_reason})" if self.last_exit_reason else ""
        if self.crash_loop and self._loop_reported:
            log.debug("engine %s died again with %s%s", self.model_id, how, why)
            return
        log.warning(
            "engine %s (pid %s) died with %s%s after %.1f s; restarting in %.1f s",
            self.model_id,
            self._proc.pid if self._proc else "?",
            how,
            why,
            lived_s,
            delay_s,
        )
        if self.crash_loop:
            self._loop_reported = True
            last = " | ".join(list(self._tail)[-3:])
            log.error(
                "engine %s is in a crash loop: %d deaths in a row, each within %.0f s of its "
                "start, the last with %s; retrying every %.0f s at most. What to do: %s.%s",
                self.model_id,
                self._quick_deaths,
                self.stable_after_s,
                how,
                self.backoff_max_s,
                advice(returncode, self.last_exit_reason),
                f" Its last lines: {last}" if last else "",
            )


__all__ = [
    "TOKEN_ENV",
    "EngineProcess",
    "ProcessState",
    "ProcessStatus",
    "advice",
    "die_with_parent",
    "exit_name",
    "free_port",
]
