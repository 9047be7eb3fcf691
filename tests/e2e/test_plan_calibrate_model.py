"""``modelgrid plan calibrate`` against a real ``modelgrid serve`` with the packaged model:
the real SSE stream, its usage (cached prompt tokens taken off) and the placement header."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.planner import profile as profiles
from tests.support import ProcessServer

pytestmark = pytest.mark.model
MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.mark.timeout(240)
def test_calibrate_through_the_real_gateway(model_server: ProcessServer, tmp_path: Path) -> None:
    """A made-up profile of the packaged model (prefill 100 + 5 n ms, decode 40 ms): three
    idle requests of ~100 uncached prompt tokens and 6 output tokens through the gateway. The
    decode spread is the real time per output token over 40 ms and the prefill spread the
    real prefill over the fit (each positive, sorted, three of them; between 0.05 and 100:
    a slow machine under the whole suite read 10.7, a seconds-for-milliseconds slip reads
    1000); the fits are kept and one replica per machine means no host slowdown."""
    path = tmp_path / "profile.json"
    made_up = profiles.synthetic(MODEL, prefill_base_ms=100, prefill_per_token_ms=5,
                                 decode_ms=40)  # fmt: skip
    profiles.save(made_up, path)
    done = CliRunner().invoke(
        app,
        ["plan", "calibrate", "--key", model_server.api_key,  # type: ignore[attr-defined]
         "--url", f"{model_server.base_url}/v1", "--profile", str(path), "--requests", "3",
         "--max-tokens", "6"],
        env={"MODELGRID_DATA_DIR": str(tmp_path), "COLUMNS": "200"},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    p = profiles.load(path)
    assert (p.prefill, p.decode, p.host_slowdown) == (made_up.prefill, made_up.decode, ())
    assert len(p.prefill_spread) == len(p.decode_spread) == 3
    assert list(p.prefill_spread) == sorted(p.prefill_spread)
    assert 0.05 < p.decode_spread[1] < 100 and 0.05 < p.prefill_spread[1] < 100
    assert p.overhead_ms >= 0 and p.calibrated_at
    assert f"3 idle requests through {model_server.base_url}/v1" in " ".join(done.output.split())


@pytest.mark.timeout(60)
def test_a_url_without_v1_is_answered_404_with_a_hint(
    model_server: ProcessServer, tmp_path: Path
) -> None:
    path = tmp_path / "profile.json"
    profiles.save(profiles.synthetic(MODEL, prefill_base_ms=100, prefill_per_token_ms=5,
                                     decode_ms=40), path)  # fmt: skip
    done = CliRunner().invoke(
        app,
        ["plan", "calibrate", "--key", model_server.api_key,  # type: ignore[attr-defined]
         "--url", model_server.base_url, "--profile", str(path), "--requests", "1"],
        env={"MODELGRID_DATA_DIR": str(tmp_path), "COLUMNS": "200"},
    )  # fmt: skip
    text = " ".join(done.output.split())
    assert done.exit_code == 2 and "Traceback" not in text, text
    assert f"calibration: {model_server.base_url}/chat/completions answered 404" in text, text
    assert text.endswith("(is --url the API root, ending in /v1?)"), text


@pytest.mark.timeout(120)
async def test_the_probe_reads_the_real_stream(model_server: ProcessServer) -> None:
    """One counting message of 40 words: the packaged model writes all 6 tokens; the usage
    says which prompt tokens were not cached (the chat template's system prompt is, after
    the warm-up); the gateway names the replica; the times are in order."""
    from modelgrid.planner.calibration import measure
    from modelgrid.planner.probe import ChatProbe

    async with ChatProbe(f"{model_server.base_url}/v1", model_server.api_key, MODEL,  # type: ignore[attr-defined]
                         max_tokens=6) as probe:  # fmt: skip
        run = await measure(probe, requests=2, seed=3)
    for s in run.idle:
        assert s.output_tokens == 6 and s.replica == f"local/{MODEL}/local"
        assert 60 <= s.prompt_tokens <= 140
        assert s.sent_s < s.first_s < s.last_s
