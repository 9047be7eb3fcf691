"""``planner.profiling`` on the real engine (llama.cpp, the packaged model) over a tiny grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.config import Settings
from modelgrid.engines.registry import build_engine
from modelgrid.planner.profiling import ProfileGrid, profile_engine

pytestmark = pytest.mark.model
MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.mark.timeout(180)
async def test_profiling_the_real_engine() -> None:
    s = Settings()
    engine = build_engine(
        "llamacpp", MODEL, s.models_dir, s.engine.model_copy(update={"n_ctx": 512})
    )
    await engine.start()
    try:
        grid = ProfileGrid(prompt_tokens=(24, 96), batch_sizes=(1, 2), output_tokens=6, repeats=2)
        p = await profile_engine(engine, grid, n_threads=s.engine.n_threads)
    finally:
        await engine.aclose()
    cells = [(b, n) for b in (1, 2) for n in (24, 96) for _ in range(2)]  # 2 repeats each
    assert [(pt.batch, pt.prompt_tokens) for pt in p.points] == [
        (b, pytest.approx(n, abs=3)) for b, n in cells
    ]
    assert all(pt.output_tokens >= 2 and pt.decode_ms > 0 for pt in p.points)
    assert p.slots == 1  # one sequence at a time: two at once do not add throughput
    assert p.prefill_ms(96) > p.prefill_ms(24) > 0
    assert p.decode[0] > 0 and p.measured_at


def test_plan_profile_refuses_prompts_longer_than_the_context(tmp_path: Path) -> None:
    """One line and status 2 before the engine loads (it was a ContextLengthExceededError
    traceback from inside the profiling)."""
    done = CliRunner().invoke(
        app,
        ["plan", "profile", "--prompt-tokens", "64,600", "--output-tokens", "32",
         "--out", str(tmp_path / "p.json")],
        env={"MODELGRID_ENGINE__N_CTX": "512", "COLUMNS": "200"},
    )  # fmt: skip
    assert done.exit_code == 2, done.output
    assert (
        f"--prompt-tokens: at most 480 for {MODEL} (a context of 512 tokens less "
        "--output-tokens 32), got 600"
    ) in " ".join(done.output.split())
    assert not (tmp_path / "p.json").exists()
