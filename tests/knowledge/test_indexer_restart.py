"""The indexer in the background: progress while it runs, a clean stop between steps when
the gateway shuts down, and unfinished documents re-picked after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from modelgrid.engines.embedding import Embeddings
from modelgrid.engines.fake import FakeEngine
from tests.conftest import SettingsFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.knowledge.test_api_fake import GUIDE, api, make_kb, upload, wait_ready
from tests.support import ThreadServer, create_key, db_execute, db_rows

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class SlowHashEngine(HashEmbeddingEngine):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        await asyncio.sleep(self.delay_s)
        return await super().embed(texts)


def serve(settings_factory: SettingsFactory, engine: HashEmbeddingEngine, key: str) -> ThreadServer:
    s = settings_factory(
        knowledge={
            "poll_interval_s": 0.05,
            "chunk_tokens": 40,
            "chunk_overlap": 10,
            "embed_batch": 1,
        }
    )
    server = ThreadServer(s, lambda _s: [FakeEngine(), engine])
    server.api_key = key
    return server.start()


def test_progress_stop_and_restart(settings_factory: SettingsFactory) -> None:
    key = create_key(settings_factory().database_url, name="t").plaintext
    first = serve(settings_factory, SlowHashEngine(0.4), key)
    try:
        kb = make_kb(first)
        doc = upload(first, kb["id"], GUIDE).json()
        deadline = time.monotonic() + 10
        seen = None
        while time.monotonic() < deadline:
            seen = api(first, "GET", f"/v1/knowledge_bases/{kb['id']}/documents/{doc['id']}").json()
            if seen["status"] == "indexing" and seen["chunks_done"] >= 1:
                break
            time.sleep(0.02)
        assert seen is not None and seen["status"] == "indexing"
        assert seen["chunks_total"] == 3 and 1 <= seen["chunks_done"] < 3
    finally:
        started = time.monotonic()
        first.stop()  # mid-document: the indexer stops after the embedding call in flight
    assert time.monotonic() - started < 5
    [row] = db_rows(first, "SELECT status, lease_owner FROM knowledge_documents")
    assert row["status"] == "indexing"  # unfinished, and nothing of it written
    assert db_rows(first, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0

    second = serve(settings_factory, HashEmbeddingEngine(), key)  # same gateway, restarted
    try:
        done = wait_ready(second, kb["id"], doc["id"])
        assert (done["status"], done["chunks_total"], done["chunks_done"]) == ("ready", 3, 3)
        assert db_rows(second, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 3
    finally:
        second.stop()


def test_another_gateways_expired_lease_is_taken_over(settings_factory: SettingsFactory) -> None:
    key = create_key(settings_factory().database_url, name="t").plaintext
    server = serve(settings_factory, HashEmbeddingEngine(), key)
    try:
        kb = make_kb(server)
        [k] = db_rows(server, "SELECT id, workspace_id FROM api_keys")
        past = datetime.now(UTC) - timedelta(seconds=5)
        future = datetime.now(UTC) + timedelta(hours=1)
        for doc_id, lease_until in (("doc-dead", past), ("doc-alive", future)):
            db_execute(
                server,
                "INSERT INTO knowledge_documents (id, workspace_id, knowledge_base_id, api_key_id,"
                " filename, format, bytes, status, sections, chunks_total, chunks_done, tokens,"
                " created_at, lease_owner, lease_until) VALUES (:id, :ws, :kb, :key, 'x.txt',"
                " 'text', 5, 'indexing', :sections, 0, 0, 0, :now, 'gw-elsewhere', :until)",
                id=doc_id,
                ws=k["workspace_id"],
                kb=kb["id"],
                key=k["id"],
                sections=json.dumps([{"heading": "", "text": "Left behind by a dead gateway."}]),
                now=datetime.now(UTC),
                until=lease_until,
            )
        assert wait_ready(server, kb["id"], "doc-dead")["chunks_total"] == 1
        time.sleep(0.3)  # several indexer rounds: a live lease is left alone
        alive = api(server, "GET", f"/v1/knowledge_bases/{kb['id']}/documents/doc-alive").json()
        assert alive["status"] == "indexing"
    finally:
        server.stop()


def test_a_revoked_key_fails_its_document(settings_factory: SettingsFactory) -> None:
    url = settings_factory().database_url
    key = create_key(url, name="t").plaintext
    gone = create_key(url, name="gone")
    server = serve(settings_factory, HashEmbeddingEngine(), key)
    try:
        kb = make_kb(server)
        db_execute(
            server,
            "UPDATE api_keys SET revoked_at = :now WHERE id = :id",
            now=datetime.now(UTC),
            id=gone.key_id,
        )
        db_execute(
            server,
            "INSERT INTO knowledge_documents (id, workspace_id, knowledge_base_id, api_key_id,"
            " filename, format, bytes, status, sections, chunks_total, chunks_done, tokens,"
            " created_at) VALUES ('doc-1', :ws, :kb, :key, 'x.txt', 'text', 5, 'pending',"
            " :sections, 0, 0, 0, :now)",
            ws=gone.workspace_id,
            kb=kb["id"],
            key=gone.key_id,
            sections=json.dumps([{"heading": "", "text": "Billed to a revoked key."}]),
            now=datetime.now(UTC),
        )
        done = wait_ready(server, kb["id"], "doc-1")
        assert done["status"] == "failed"
        assert done["error"] == "This API key has been revoked."
        assert db_rows(server, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0
    finally:
        server.stop()


def test_a_failing_engine_leaves_the_document_pending_and_retries_later(
    settings_factory: SettingsFactory,
) -> None:
    key = create_key(settings_factory().database_url, name="t").plaintext
    engine = HashEmbeddingEngine()
    engine.fail = True
    server = serve(settings_factory, engine, key)
    try:
        kb = make_kb(server)
        doc = upload(server, kb["id"], b"Text that cannot be embedded yet.", "a.txt").json()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not engine.batches:
            time.sleep(0.02)
        time.sleep(0.5)  # ten indexer polls: no retry before RETRY_S
        got = api(server, "GET", f"/v1/knowledge_bases/{kb['id']}/documents/{doc['id']}").json()
        assert got["status"] == "pending"
        assert got["error"] == (  # its one replica failed: the routed call's 503
            "No replica of the model 'hash-embedding' is available in the regions this API "
            "key may use; try again later."
        )
        assert len(engine.batches) == 1
        assert db_rows(server, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0
    finally:
        server.stop()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_large_document_does_not_hold_up_another_workspaces(
    settings_factory: SettingsFactory, concurrency: int
) -> None:
    """Workspace A's two 24-chunk documents (0.25 s an embedding call) are waiting or
    indexing when workspace B adds a one-chunk one: with two slots (the default) A holds one
    and B's is ready in about one call; with one, B's waits for the whole of A's first."""
    url = settings_factory().database_url
    a = create_key(url, name="a", workspace="a").plaintext
    b = create_key(url, name="b", workspace="b").plaintext
    s = settings_factory(
        knowledge={
            "poll_interval_s": 0.05,
            "chunk_tokens": 40,
            "chunk_overlap": 10,
            "embed_batch": 1,
            "indexing_concurrency": concurrency,
        }
    )
    server = ThreadServer(s, lambda _s: [FakeEngine(), SlowHashEngine(0.25)])
    server.api_key = a
    server.start()
    try:
        big_kb = make_kb(server, a)
        big = upload(server, big_kb["id"], GUIDE * 8, key=a).json()
        second = upload(server, big_kb["id"], GUIDE * 8, name="two.md", key=a).json()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = api(server, "GET", f"/v1/knowledge_bases/{big_kb['id']}/documents/{big['id']}")
            if got.json()["chunks_done"] >= 1:
                break
            time.sleep(0.02)
        small_kb = make_kb(server, b)
        started = time.monotonic()
        small = upload(server, small_kb["id"], b"# Hours\n\nOpen from nine to five.", key=b).json()
        done = wait_ready(server, small_kb["id"], small["id"], key=b)
        waited_s = time.monotonic() - started
        assert done["status"] == "ready"
        big_now = api(server, "GET", f"/v1/knowledge_bases/{big_kb['id']}/documents/{big['id']}")
        if concurrency == 2:  # A's second document did not take the other slot
            assert waited_s < 2.0, waited_s
            assert big_now.json()["status"] == "indexing"  # A's still going, beside it
        else:
            assert big_now.json()["status"] == "ready"  # B's waited for all of A's
        big_done = wait_ready(server, big_kb["id"], big["id"], key=a)
        assert (big_done["status"], big_done["chunks_done"]) == ("ready", big_done["chunks_total"])
        assert big_done["chunks_total"] >= 16
        assert wait_ready(server, big_kb["id"], second["id"], key=a)["status"] == "ready"
    finally:
        server.stop()
