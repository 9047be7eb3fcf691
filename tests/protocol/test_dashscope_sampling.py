"""DashScope's top_k and repetition_penalty reach the core sampling parameters."""

from __future__ import annotations

from modelgrid.protocol.dashscope.convert import to_inference_request
from modelgrid.protocol.dashscope.models import GenerationRequest


def test_top_k_and_repetition_penalty_are_applied() -> None:
    req = GenerationRequest.model_validate(
        {
            "model": "m",
            "input": {"prompt": "hi"},
            "parameters": {"top_k": 5, "repetition_penalty": 1.1},
        }
    )
    sp = to_inference_request(req, "r").sampling
    assert (sp.top_k, sp.repetition_penalty) == (5, 1.1)
    plain = to_inference_request(
        GenerationRequest.model_validate({"model": "m", "input": {"prompt": "hi"}}), "r"
    )
    assert (plain.sampling.top_k, plain.sampling.repetition_penalty) == (0, 1.0)
