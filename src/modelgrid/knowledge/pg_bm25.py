"""BM25 on PostgreSQL full-text search: the statistics it needs and the ranking query.

The score is Okapi BM25 as SQLite FTS5's ``bm25()`` computes it (Robertson and Zaragoza,
"The Probabilistic Relevance Framework: BM25 and Beyond", Foundations and Trends in IR 3(4),
2009, eq. 3.15 with the Robertson/Spärck Jones IDF; FTS5's form: sqlite.org/fts5.html
section 5.1.1 and ``fts5_bm25_function`` in ``fts5_aux.c``)::

    score(D, Q) = sum over the query's lexemes t that D holds of
        IDF(t) * f(t, D) * (k1 + 1) / (f(t, D) + k1 * (1 - b + b * |D| / avgdl))
    IDF(t) = ln((N - n(t) + 0.5) / (n(t) + 0.5)), or 1e-6 where that is not above 0
    k1 = 1.2, b = 0.75

where ``N`` is the knowledge base's chunk count, ``n(t)`` how many of its chunks hold ``t``,
``f(t, D)`` how often ``D`` holds it (the lexeme's positions in the chunk's ``tsvector``:
PostgreSQL keeps at most 256 a lexeme), ``|D|`` the chunk's length in lexeme occurrences
(English stop words are not in a ``tsvector``, so not counted) and ``avgdl`` the mean
``|D|``. Higher is better (FTS5's ``bm25()`` returns the negation). Unlike FTS5, whose one
table pools every knowledge base, ``N``, ``n(t)`` and ``avgdl`` are per knowledge base.

Tokens are ``to_tsvector('english', …)``'s: Snowball (Porter 2) English stems, PostgreSQL's
English stop words dropped, in chunks and queries alike (SQLite: Porter stems, stop words
left out of the query only).

Two tables beside ``knowledge_pg_text`` (whose rows gain ``length`` = ``|D|``) hold the
statistics, changed in the transaction that writes or deletes the chunks:

- ``knowledge_pg_stats``: per knowledge base, its chunk count and total length;
- ``knowledge_pg_terms``: per knowledge base and lexeme, how many chunks hold it.

A write or delete locks the knowledge base's ``knowledge_pg_stats`` row before any of its
``knowledge_pg_terms`` rows: that row lock orders the concurrent writers of one knowledge base,
so their ``knowledge_pg_terms`` updates never deadlock. The ranking query finds the matching chunks through the GIN index
(``tsv @@ query``) and scores each from only the query's lexemes of its ``tsvector``
(``setweight`` + ``ts_filter``: the lexemes' positions, without unnesting the whole vector),
one statement and one round trip. It scores every matching chunk (no top-k pruning): a
five-word query matches most of a 100k-chunk knowledge base, ~1.2 s; so from
``lexical_min_chunks`` chunks ``PgIndex`` ranks from in-process postings instead
(``knowledge.lexical``, fed from ``knowledge_pg_text``), with these statistics and scores.
"""

from __future__ import annotations

from modelgrid.knowledge.bm25 import IDF_FLOOR, K1, B  # the formula's constants, one place

CREATE = (
    "CREATE TABLE IF NOT EXISTS knowledge_pg_text ("
    " chunk_id bigint PRIMARY KEY, knowledge_base_id varchar(40) NOT NULL,"
    " tsv tsvector NOT NULL, length integer NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_knowledge_pg_text_tsv ON knowledge_pg_text USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS ix_knowledge_pg_text_kb ON knowledge_pg_text (knowledge_base_id)",
    "CREATE TABLE IF NOT EXISTS knowledge_pg_stats ("
    " knowledge_base_id varchar(40) PRIMARY KEY, chunks bigint NOT NULL,"
    " length bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS knowledge_pg_terms ("
    " knowledge_base_id varchar(40) NOT NULL, lexeme text NOT NULL, chunks bigint NOT NULL,"
    " PRIMARY KEY (knowledge_base_id, lexeme))",
)

# |D|: the positions of every lexeme of the tsvector ``v`` (a lexeme without positions: 1).
_LENGTH = "(SELECT coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0) FROM unnest(v) u)"

INSERT_TEXT = (
    "INSERT INTO knowledge_pg_text (chunk_id, knowledge_base_id, tsv, length) "
    f"SELECT :c, :kb, v, {_LENGTH} FROM to_tsvector('english', :t) v"
)

# Added after a document's text rows are in (``:ids``, its chunk ids); the stats row first.
ADD_STATS = (
    "INSERT INTO knowledge_pg_stats (knowledge_base_id, chunks, length) "
    "SELECT :kb, count(*), coalesce(sum(length), 0) FROM knowledge_pg_text "
    "WHERE chunk_id = ANY(:ids) "
    "ON CONFLICT (knowledge_base_id) DO UPDATE SET "
    "chunks = knowledge_pg_stats.chunks + excluded.chunks, "
    "length = knowledge_pg_stats.length + excluded.length"
)
ADD_TERMS = (
    "INSERT INTO knowledge_pg_terms (knowledge_base_id, lexeme, chunks) "
    "SELECT :kb, l.lexeme, count(*) FROM knowledge_pg_text t, "
    "unnest(tsvector_to_array(t.tsv)) AS l(lexeme) WHERE t.chunk_id = ANY(:ids) "
    "GROUP BY l.lexeme ORDER BY l.lexeme "
    "ON CONFLICT (knowledge_base_id, lexeme) DO UPDATE SET "
    "chunks = knowledge_pg_terms.chunks + excluded.chunks"
)


def subtract(chosen: str) -> tuple[str, ...]:
    """The statements that take the chunks ``chosen`` (a ``SELECT`` of chunk ids) out of their
    knowledge bases' statistics, run before their text rows are deleted: the stats rows
    first (the lock order above), then the lexemes' counts, then the lexemes no chunk holds."""
    mine = f"t.chunk_id IN ({chosen})"
    return (
        "UPDATE knowledge_pg_stats s SET chunks = s.chunks - x.n, length = s.length - x.len "
        "FROM (SELECT t.knowledge_base_id AS kb, count(*) AS n, sum(t.length) AS len "
        f"FROM knowledge_pg_text t WHERE {mine} GROUP BY t.knowledge_base_id) x "
        "WHERE s.knowledge_base_id = x.kb",
        "UPDATE knowledge_pg_terms d SET chunks = d.chunks - x.n "
        "FROM (SELECT t.knowledge_base_id AS kb, l.lexeme, count(*) AS n "
        "FROM knowledge_pg_text t, unnest(tsvector_to_array(t.tsv)) AS l(lexeme) "
        f"WHERE {mine} GROUP BY t.knowledge_base_id, l.lexeme) x "
        "WHERE d.knowledge_base_id = x.kb AND d.lexeme = x.lexeme",
        "DELETE FROM knowledge_pg_terms d WHERE d.chunks <= 0 AND d.knowledge_base_id IN "
        f"(SELECT t.knowledge_base_id FROM knowledge_pg_text t WHERE {mine})",
    )


# A knowledge base's statistics, when the knowledge base (``:kb``) of workspace ``:ws`` goes.
DROP_STATS = tuple(
    f"DELETE FROM {table} WHERE knowledge_base_id = :kb AND EXISTS "
    "(SELECT 1 FROM knowledge_bases b WHERE b.id = :kb AND b.workspace_id = :ws)"
    for table in ("knowledge_pg_stats", "knowledge_pg_terms")
)


def rank_sql(only: str) -> str:
    """The ranking query: ``(chunk_id, score)`` of the ``:k`` best chunks of knowledge base
    ``:kb`` in workspace ``:ws`` for the ``to_tsquery`` text ``:q``, best first, ties by chunk
    id; ``only`` adds conditions on ``c`` (``knowledge_chunks``).

    Each ``MATERIALIZED`` part runs once a query (a prepared statement's generic plan would
    otherwise evaluate the query's lexemes again for every matching chunk): the knowledge
    base's statistics, the query lexemes' IDF, and the matching chunks, found through the GIN
    index and the knowledge base before anything else is joined."""
    k1, b, floor = f"{K1}::float8", f"{B}::float8", f"{IDF_FLOOR}::float8"
    return (
        "WITH s AS MATERIALIZED (SELECT chunks::float8 AS n, length::float8 / chunks AS avgdl "
        "FROM knowledge_pg_stats WHERE knowledge_base_id = :kb AND chunks > 0), "
        "x AS MATERIALIZED (SELECT unnest(tsvector_to_array(to_tsvector('english', :q))) "
        "AS lexeme), "
        "w AS MATERIALIZED (SELECT d.lexeme, "
        f"greatest(ln((s.n - d.chunks + 0.5) / (d.chunks + 0.5)), {floor}) AS idf "
        "FROM x JOIN knowledge_pg_terms d ON d.knowledge_base_id = :kb "
        "AND d.lexeme = x.lexeme, s), "
        "l AS MATERIALIZED (SELECT array_agg(lexeme) AS lexemes FROM w), "
        "m AS MATERIALIZED (SELECT t.chunk_id, t.tsv, t.length FROM knowledge_pg_text t "
        "WHERE t.tsv @@ to_tsquery('english', :q) AND t.knowledge_base_id = :kb) "
        f"SELECT m.chunk_id, sum(w.idf * f.tf * ({k1} + 1) / "
        f"(f.tf + {k1} * (1 - {b} + {b} * m.length / s.avgdl))) AS score "
        "FROM m JOIN knowledge_chunks c ON c.id = m.chunk_id, s, l, "
        "LATERAL (SELECT u.lexeme, coalesce(array_length(u.positions, 1), 1)::float8 AS tf "
        "FROM unnest(ts_filter(setweight(m.tsv, 'A', l.lexemes), '{a}')) u) f "
        "JOIN w ON w.lexeme = f.lexeme "
        "WHERE c.workspace_id = :ws " + only + "GROUP BY m.chunk_id "
        "ORDER BY score DESC, m.chunk_id LIMIT :k"
    )


__all__ = [
    "ADD_STATS",
    "ADD_TERMS",
    "CREATE",
    "DROP_STATS",
    "INSERT_TEXT",
    "rank_sql",
    "subtract",
]
