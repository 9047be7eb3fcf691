"""Knowledge bases with the real packaged all-MiniLM-L6-v2 (in the gateway's process): the
default 800/400 chunking fitted to the model's 256 tokens, counted by its tokenizer, and a
question answered by the right chunk in every mode."""

from __future__ import annotations

import pytest

from modelgrid.engines.embedding import build_embedding_engines, installed
from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.test_api_fake import make_kb, search, upload, wait_ready
from tests.support import db_rows

pytestmark = [pytest.mark.model, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
MODEL = "all-minilm-l6-v2"

MANUAL = "\n\n".join(
    [
        "# Kettle KX-200 manual",
        "## Descaling\n\n"
        + "Fill the kettle with equal parts water and white vinegar, boil once and rinse. " * 30,
        "## Warranty\n\n"
        + "The warranty covers manufacturing defects for two years from the date of purchase. "
        * 30,
        "## Safety\n\nNever immerse the base in water. Keep the cord away from the hob. " * 20,
    ]
).encode()


def test_real_embeddings_index_and_retrieve(server_factory: ServerFactory) -> None:
    assert installed(MODEL), "pip install 'modelgrid[embeddings]'"
    [engine] = build_embedding_engines([MODEL], batch_size=32)
    s = server_factory(FakeEngine(), engine, knowledge={"poll_interval_s": 0.05})
    kb = make_kb(s)
    assert kb["embedding_model"] == MODEL
    assert kb["chunking"] == {"max_tokens": 800, "overlap_tokens": 400}
    doc = upload(s, kb["id"], MANUAL, "kettle.md").json()
    done = wait_ready(s, kb["id"], doc["id"])
    assert done["status"] == "ready", done
    rows = db_rows(s, "SELECT heading, tokens FROM knowledge_chunks ORDER BY id")
    headings = {r["heading"] for r in rows}
    assert headings == {
        "Kettle KX-200 manual › Descaling",
        "Kettle KX-200 manual › Warranty",
        "Kettle KX-200 manual › Safety",
    }
    # 800/400 fitted to the model's 256 tokens, less [CLS]/[SEP] and the heading
    assert max(r["tokens"] for r in rows) <= 256 - 2
    assert len(rows) > 3  # long sections give several overlapping windows
    for mode in ("dense", "lexical", "hybrid"):
        hits = search(s, kb["id"], "how long is the guarantee valid?", mode=mode).json()["data"]
        if mode == "lexical":
            continue  # "guarantee" and "valid" appear nowhere: BM25 alone cannot find it
        assert hits[0]["heading"].endswith("Warranty"), (mode, hits[0])
    hits = search(s, kb["id"], "vinegar", mode="lexical").json()["data"]
    assert hits[0]["heading"].endswith("Descaling")
