"""Text completions (packaged Qwen) and embeddings (packaged all-MiniLM-L6-v2) behind a real
`modelgrid serve`, called with the official openai SDK."""

from __future__ import annotations

import base64
import math
import os
import signal
import struct
import time

import httpx
import openai
import pytest

from tests.support import ProcessServer, usage_rows

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
EMB = "all-minilm-l6-v2"
PROMPT = "def add(a, b):\n"


def client(s: ProcessServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.base_url}/v1", api_key=s.api_key, max_retries=0)  # type: ignore[attr-defined]


def _rows_for(s: ProcessServer, client_request_id: str) -> list[dict[str, object]]:
    """Usage rows of one request, waiting for the batched writer to flush it."""
    deadline = time.monotonic() + 10
    while True:
        rows = usage_rows(s.db_path, expect=1)  # type: ignore[attr-defined]
        mine = [r for r in rows if r["client_request_id"] == client_request_id]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.1)


# -- completions --


def test_completion_string_prompt_is_raw_text(model_server: ProcessServer) -> None:
    r = client(model_server).completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0
    )
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    text = r.choices[0].text
    assert "return" in text  # a raw code prompt is continued, not answered as a chat
    assert r.usage is not None and 5 <= r.usage.prompt_tokens <= 12
    assert r.usage.completion_tokens <= 12


def test_completion_max_tokens_defaults_to_16(model_server: ProcessServer) -> None:
    r = client(model_server).completions.create(
        model=MODEL, prompt="Once upon a time", temperature=0
    )
    assert r.usage is not None and r.usage.completion_tokens <= 16
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 16


def test_completion_list_prompts_n_and_one_usage_record(model_server: ProcessServer) -> None:
    c = client(model_server)
    prompts = ["The capital of France is", "1, 2, 3, 4,"]
    kw = {"model": MODEL, "max_tokens": 6, "temperature": 0, "seed": 7}  # the seed: same output
    alone = [c.completions.create(prompt=p, **kw).choices[0].text for p in prompts]  # type: ignore[call-overload]
    r = c.completions.create(
        prompt=prompts,
        n=2,
        extra_headers={"x-request-id": "e2e-multi-prompt"},
        **kw,  # type: ignore[arg-type]
    )
    assert [ch.index for ch in r.choices] == [0, 1, 2, 3]
    assert [ch.text for ch in r.choices] == [alone[0], alone[0], alone[1], alone[1]]  # greedy
    rows = _rows_for(model_server, "e2e-multi-prompt")
    assert len(rows) == 1 and rows[0]["endpoint"] == "completions"
    assert r.usage is not None
    assert rows[0]["prompt_tokens"] == r.usage.prompt_tokens
    assert rows[0]["completion_tokens"] == r.usage.completion_tokens


def test_completion_stream_equals_non_stream_with_usage(model_server: ProcessServer) -> None:
    c = client(model_server)
    kw = {"model": MODEL, "prompt": PROMPT, "max_tokens": 10, "temperature": 0}
    full = c.completions.create(**kw)  # type: ignore[call-overload]
    chunks = list(
        c.completions.create(stream=True, stream_options={"include_usage": True}, **kw)  # type: ignore[call-overload]
    )
    streamed = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert streamed == full.choices[0].text
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and full.usage is not None
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    assert counts == (full.usage.prompt_tokens, 10, full.usage.prompt_tokens + 10)
    # The same prompt again: the replica's prefix cache served all but its last token.
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason


def test_completion_stop_and_echo(model_server: ProcessServer) -> None:
    c = client(model_server)
    prompt = "Count: 1, 2, 3,"
    kw = {"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0}
    text = c.completions.create(**kw).choices[0].text  # type: ignore[call-overload]
    assert "5" in text
    stop = text[text.index("5") : text.index("5") + 2]
    for stream in (False, True):
        r = c.completions.create(stop=[stop], echo=True, stream=stream, **kw)  # type: ignore[call-overload]
        if stream:
            parts = list(r)
            out = "".join(p.choices[0].text for p in parts if p.choices)
            assert parts[-1].choices[0].finish_reason == "stop"
        else:
            out = r.choices[0].text
            assert r.choices[0].finish_reason == "stop"
        assert out == prompt + text[: text.index(stop)]


def test_completion_suffix_and_logprobs_rejected(model_server: ProcessServer) -> None:
    c = client(model_server)
    with pytest.raises(openai.BadRequestError) as exc:
        c.completions.create(model=MODEL, prompt=PROMPT, suffix="    return c\n")
    assert exc.value.body["param"] == "suffix"  # type: ignore[index]
    assert exc.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as exc:
        c.completions.create(model=MODEL, prompt=PROMPT, logprobs=1)
    assert exc.value.body["param"] == "logprobs"  # type: ignore[index]


# -- embeddings --


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_listed_and_ready(model_server: ProcessServer) -> None:
    ids = [m.id for m in client(model_server).models.list()]
    assert MODEL in ids and EMB in ids
    ready = httpx.get(f"{model_server.base_url}/health/ready").json()
    assert ready["models"][EMB] is True


def test_embedding_string_float(model_server: ProcessServer) -> None:
    r = client(model_server).embeddings.create(
        model=EMB, input="The cat sits on the mat.", encoding_format="float"
    )
    [d] = r.data
    assert len(d.embedding) == 384 and d.index == 0
    assert math.isclose(sum(x * x for x in d.embedding), 1.0, rel_tol=1e-4)
    assert r.usage.prompt_tokens == r.usage.total_tokens == 9  # [CLS] 7 words+dot [SEP]


def test_embedding_base64_decodes_to_the_float_result(model_server: ProcessServer) -> None:
    texts = ["first sentence", "second one, a little longer than the first"]
    c = client(model_server)
    floats = c.embeddings.create(model=EMB, input=texts, encoding_format="float")
    raw = httpx.post(
        f"{model_server.base_url}/v1/embeddings",
        headers={"Authorization": f"Bearer {model_server.api_key}"},  # type: ignore[attr-defined]
        json={"model": EMB, "input": texts, "encoding_format": "base64"},
    ).json()
    for d, f in zip(raw["data"], floats.data, strict=True):
        decoded = list(struct.unpack("<384f", base64.b64decode(d["embedding"])))
        assert decoded == f.embedding  # exactly the same float32 values
    sdk_default = c.embeddings.create(model=EMB, input=texts)  # the SDK asks for base64
    assert [d.embedding for d in sdk_default.data] == [f.embedding for f in floats.data]


def test_embedding_similarity_related_beats_unrelated(model_server: ProcessServer) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar on stage.",
        "The stock market fell sharply on Monday.",
    ]
    r = client(model_server).embeddings.create(model=EMB, input=texts)
    a, b, c = (d.embedding for d in r.data)
    assert _cos(a, b) > _cos(a, c) + 0.3
    assert _cos(a, b) > _cos(b, c) + 0.3


def test_embedding_dimensions_and_token_ids_rejected(model_server: ProcessServer) -> None:
    c = client(model_server)
    assert len(c.embeddings.create(model=EMB, input="x", dimensions=384).data[0].embedding) == 384
    for kw in ({"input": "x", "dimensions": 128}, {"input": [[101, 102]]}, {"input": ""}):
        with pytest.raises(openai.BadRequestError):
            c.embeddings.create(model=EMB, **kw)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as exc:
        c.embeddings.create(model=EMB, input="word " * 300)
    assert exc.value.body["code"] == "context_length_exceeded"  # type: ignore[index]


def test_embedding_token_ids_of_the_models_tokenizer_equal_the_text(
    model_server: ProcessServer,
) -> None:
    c = client(model_server)
    ids = [101, 1037, 4937, 102]  # BERT WordPiece: [CLS] a cat [SEP]
    by_ids = c.embeddings.create(model=EMB, input=[ids]).data[0].embedding
    by_text = c.embeddings.create(model=EMB, input="a cat").data[0].embedding
    assert max(abs(x - y) for x, y in zip(by_ids, by_text, strict=True)) < 1e-5
    with pytest.raises(openai.BadRequestError) as exc:
        c.embeddings.create(model=EMB, input=[[999999]])
    assert "vocabulary" in exc.value.body["message"]  # type: ignore[index]


def test_the_embedding_engine_process_dies_and_the_next_call_waits_for_it(
    model_server: ProcessServer,
) -> None:
    """The embedding model runs in its own supervised process: SIGKILL it, and the next call
    waits for the restart and gets the same vector; the gateway never went down."""
    c = client(model_server)
    before = c.embeddings.create(model=EMB, input="a kitten").data[0].embedding
    ready = httpx.get(f"{model_server.base_url}/health/ready", timeout=5).json()
    engine = ready["engines"][EMB]
    os.kill(engine["pid"], signal.SIGKILL)
    after = c.embeddings.create(model=EMB, input="a kitten").data[0].embedding
    assert after == pytest.approx(before, abs=1e-6)
    now = httpx.get(f"{model_server.base_url}/health/ready", timeout=5).json()["engines"][EMB]
    assert (now["restarts"], now["last_exit"]) == (engine["restarts"] + 1, "SIGKILL")
    assert now["pid"] != engine["pid"]
