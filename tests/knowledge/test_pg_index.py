"""``knowledge.pg_index``'s pure parts: the text query it sends and the exact cosine ranking
(the index itself runs under every knowledge-base and vector-store API test on PostgreSQL)."""

from __future__ import annotations

import struct

from modelgrid.knowledge.pg_index import _cosine_top, ts_query


def test_ts_query_ors_the_words_and_keeps_only_letters_and_digits() -> None:
    assert ts_query("When is a refund granted?") == "when | is | a | refund | granted"
    assert ts_query("refund's & (x | y) !z:* 42") == "refund | s | x | y | z | 42"
    assert ts_query("Refund refund REFUND") == "refund"
    assert ts_query("?! --") is None


def _vec(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


def test_cosine_top_is_exact_and_breaks_ties_by_id() -> None:
    rows = [
        (7, _vec(0.0, 1.0)),  # orthogonal: distance 1
        (3, _vec(2.0, 0.0)),  # same direction, longer: distance 0
        (5, _vec(1.0, 1.0)),  # 45 degrees: 1 - 1/sqrt(2)
        (4, _vec(1.0, 0.0)),  # distance 0, tie with 3: the smaller id first
        (9, _vec(0.0, 0.0)),  # no direction: cosine taken as 0
    ]
    top = _cosine_top(rows, _vec(1.0, 0.0), 2, 4)
    assert [cid for cid, _ in top] == [3, 4, 5, 7]
    assert [round(d, 6) for _, d in top] == [0.0, 0.0, round(1 - 2**-0.5, 6), 1.0]
    assert _cosine_top([], _vec(1.0, 0.0), 2, 5) == []
