"""A batch on the real Qwen model through the official ``openai`` SDK: upload, create, poll,
read the output file; its lines billed at half the online price."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from tests.support import ProcessServer, db_rows

pytestmark = pytest.mark.e2e
MODEL = "qwen2.5-coder-0.5b-instruct"


def test_a_small_batch_on_the_real_model(model_server: ProcessServer, tmp_path: Path) -> None:
    c = openai.OpenAI(base_url=f"{model_server.base_url}/v1", api_key=model_server.api_key)  # type: ignore[attr-defined]
    questions = ["What is 2 + 2? Answer with a number.", "Name a primary colour.", "Say hi."]
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"q{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": MODEL,
                        "messages": [{"role": "user", "content": q}],
                        "max_tokens": 8,
                        "temperature": 0,
                    },
                }
            )
            + "\n"
            for i, q in enumerate(questions)
        )
    )
    with path.open("rb") as f:
        uploaded = c.files.create(file=f, purpose="batch")
    batch = c.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
        batch = c.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts.completed == 3 and batch.request_counts.failed == 0
    out = [json.loads(x) for x in c.files.content(batch.output_file_id).read().splitlines()]  # type: ignore[arg-type]
    assert [x["custom_id"] for x in out] == ["q0", "q1", "q2"]
    first = out[0]["response"]["body"]
    assert "4" in first["choices"][0]["message"]["content"]
    assert first["usage"]["completion_tokens"] <= 8
    rows = db_rows(
        model_server.db_path,  # type: ignore[attr-defined]
        "SELECT custom_id, prompt_tokens, completion_tokens FROM usage_records "
        "WHERE batch_id = :b ORDER BY custom_id",
        b=batch.id,
    )
    assert [(r["custom_id"], r["completion_tokens"]) for r in rows] == [
        (x["custom_id"], x["response"]["body"]["usage"]["completion_tokens"]) for x in out
    ]
    assert batch.usage.input_tokens == sum(r["prompt_tokens"] for r in rows)
