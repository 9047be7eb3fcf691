"""Does the installed llama.cpp build run here? A one-token generation in a child process.

A llama.cpp binary built for instructions this machine cannot execute does not raise: it
dies — SIGILL for an instruction the CPU lacks, SIGSEGV (a general protection fault) for AMX
tiles that a virtual machine advertises but lets no worker thread use. So the check runs the
real engine (``engines.llamacpp`` through the registry, the same code ``modelgrid engine``
runs) in a child process, and reads how the child ended.

``python -m modelgrid.engines.check MODEL_ID MODELS_DIR`` is the child: it loads the model,
generates one token with every core's thread, prints ``ok`` and exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from modelgrid.core.types import ChatMessage, InferenceRequest, SamplingParams
from modelgrid.engines.process import exit_name

CHECK_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How the child ended.

    Attributes:
        ok: It generated a token and exited 0.
        returncode: The child's exit status (negative: killed by that signal).
        detail: One line for a person: the signal and what it means, or the error.
    """

    ok: bool
    returncode: int
    detail: str


def cpu_library() -> str:
    """The path of llama.cpp's CPU backend in the installed package (found without loading
    it: the caller must survive what the child may not)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return "llama_cpp/lib/libggml-cpu.so"
    return str(Path(spec.origin).parent / "lib" / "libggml-cpu.so")


def explain(returncode: int) -> str:
    """What a child's death by signal says about the llama.cpp build."""
    name = exit_name(returncode)
    if returncode == -signal.SIGILL:
        return f"{name}: the build uses an instruction this CPU does not have"
    if returncode in (-signal.SIGSEGV, -signal.SIGBUS):
        return (
            f"{name}: a fault inside llama.cpp's CPU kernels (as AMX tiles a virtual machine "
            "advertises but does not let threads use)"
        )
    if returncode == -signal.SIGKILL:
        return f"{name}: killed (out of memory?)"
    return name


def run_check(model_id: str, models_dir: Path, timeout_s: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Run the one-token generation in a child process and report how it ended."""
    cmd = [sys.executable, "-m", "modelgrid.engines.check", model_id, str(models_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return CheckResult(False, -signal.SIGKILL, f"no token within {timeout_s:.0f} s")
    if done.returncode == 0 and done.stdout.strip().endswith("ok"):
        return CheckResult(True, 0, "ok")
    if done.returncode < 0:
        return CheckResult(False, done.returncode, explain(done.returncode))
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    return CheckResult(False, done.returncode, lines[-1] if lines else exit_name(done.returncode))


async def _one_token(model_id: str, models_dir: Path) -> str:
    from modelgrid.engines.registry import build_packaged_engine

    engine = build_packaged_engine(model_id, models_dir, n_ctx=512, n_threads=0, n_batch=64)
    await engine.start()
    try:
        request = InferenceRequest(
            request_id="check",
            model=model_id,
            messages=[ChatMessage(role="user", content="Say hi.")],
            sampling=SamplingParams(max_tokens=1, temperature=0.0),
        )
        text = ""
        async for delta in engine.stream(engine.prepare(request)):
            text += delta.text
        return text
    finally:
        await engine.aclose()


def main(argv: list[str]) -> int:
    model_id, models_dir = argv[0], Path(argv[1])
    asyncio.run(_one_token(model_id, models_dir))
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["CheckResult", "cpu_library", "explain", "run_check"]
