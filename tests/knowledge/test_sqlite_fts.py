"""``SqliteIndex``'s BM25 with the knowledge base in the FTS5 MATCH: a file from before (the
one-column ``knowledge_fts``, no revisions, no statistics tables) is brought up to date on
open, ranked by the knowledge base's own statistics, and no query returns another knowledge
base's or workspace's chunk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from modelgrid.knowledge.sqlite_index import SqliteIndex, fts_query, kb_token, sqlite_path

TEXTS = {
    # (workspace, knowledge base, document): texts
    ("ws-a", "kb-1", "d1"): [
        "refund policy: a refund is granted within 30 days",
        "shipping takes five days",
        "refund refund refund for damaged goods",
    ],
    ("ws-a", "kb-2", "d2"): ["refund of the other knowledge base"],
    ("ws-b", "kb-b", "d3"): ["refund in another workspace"],
}


def _old_file(database_url: str) -> Path:
    """The migrated test database with chunks indexed as before #13."""
    path = sqlite_path(database_url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE VIRTUAL TABLE knowledge_fts USING fts5(text, tokenize='porter unicode61')"
        )
        for (ws, kb, doc), texts in TEXTS.items():
            for no, body in enumerate(texts):
                cur = conn.execute(
                    "INSERT INTO knowledge_chunks (workspace_id, knowledge_base_id, document_id, "
                    "ordinal, heading, text, tokens) VALUES (?, ?, ?, ?, '', ?, 9)",
                    (ws, kb, doc, no, body),
                )
                conn.execute(
                    "INSERT INTO knowledge_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, body)
                )
    return path


def _old_ranking(path: Path, query: str) -> list[int]:
    match = fts_query(query)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT f.rowid FROM knowledge_fts f JOIN knowledge_chunks c ON c.id = f.rowid "
            "WHERE knowledge_fts MATCH ? AND c.knowledge_base_id = 'kb-1' "
            "AND c.workspace_id = 'ws-a' ORDER BY bm25(knowledge_fts) LIMIT 10",
            (match,),
        ).fetchall()
    return [r[0] for r in rows]


async def test_an_older_file_is_rebuilt_on_open_and_ranked_by_its_own_statistics(
    database_url: str,
) -> None:
    path = _old_file(database_url)
    before = _old_ranking(path, "refund granted days")
    assert before == [1, 2, 3]  # FTS5's bm25(): 'refund' in 4 of the table's 5 chunks
    index = SqliteIndex(path)
    hits = await index.lexical("ws-a", "kb-1", "refund granted days", 10)
    # kb-1's own statistics: 'refund' and 'days' in 2 of its 3 chunks (IDF floored at 1e-6),
    # so 'refund' three times (chunk 3) outweighs 'days' once (chunk 2)
    assert [c for c, _ in hits] == [1, 3, 2]
    assert hits[0][1] > hits[1][1] > hits[2][1] > 0
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_xinfo(knowledge_fts)")]
        kb_of = dict(conn.execute("SELECT rowid, kb FROM knowledge_fts").fetchall())
        revisions = conn.execute(
            "SELECT knowledge_base_id, revision, chunks FROM knowledge_index_revisions "
            "ORDER BY knowledge_base_id"
        ).fetchall()
    assert columns[:2] == ["text", "kb"]
    assert kb_of == {
        1: kb_token("kb-1"),
        2: kb_token("kb-1"),
        3: kb_token("kb-1"),
        4: kb_token("kb-2"),
        5: kb_token("kb-b"),
    }
    assert revisions == [("kb-1", 0, 3), ("kb-2", 0, 1), ("kb-b", 0, 1)]
    # only the knowledge base's own chunks, and only for its workspace
    assert [c for c, _ in await index.lexical("ws-a", "kb-2", "refund", 10)] == [4]
    assert await index.lexical("ws-b", "kb-1", "refund", 10) == []
    assert await index.lexical("ws-a", "kb-b", "refund", 10) == []
    only = await index.lexical("ws-a", "kb-1", "refund days", 10, documents=["d1"])
    assert sorted(c for c, _ in only) == [1, 2, 3]
    assert await index.lexical("ws-a", "kb-1", "refund", 10, documents=["d2"]) == []
    await index.aclose()
    # opened again: nothing to rebuild, the same answers
    again = SqliteIndex(path)
    assert await again.lexical("ws-a", "kb-1", "refund granted days", 10) == hits
    await again.aclose()


def test_the_knowledge_base_token_is_digits_and_differs_per_base() -> None:
    assert kb_token("kb-1").isdigit() and kb_token("kb-1") == kb_token("kb-1")
    assert kb_token("kb-1") != kb_token("kb-2")
