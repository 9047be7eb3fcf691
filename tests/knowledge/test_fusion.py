"""Reciprocal rank fusion (Cormack et al. 2009, k = 60): exact scores and order."""

from __future__ import annotations

from modelgrid.knowledge.fusion import reciprocal_rank_fusion


def test_scores_are_sums_of_reciprocal_ranks() -> None:
    hits = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])
    assert [h.chunk_id for h in hits] == [1, 3, 2, 4]
    score = {h.chunk_id: h.score for h in hits}
    assert score[1] == 1 / 61 + 1 / 62
    assert score[3] == 1 / 63 + 1 / 61
    assert score[2] == 1 / 62
    assert score[4] == 1 / 63


def test_one_list_keeps_its_order_and_limit_cuts() -> None:
    hits = reciprocal_rank_fusion([[7, 8, 9], []], limit=2)
    assert [(h.chunk_id, h.score) for h in hits] == [(7, 1 / 61), (8, 1 / 62)]


def test_agreement_beats_one_first_place() -> None:
    # 5 is second in both lists; 1 and 2 are each first in one list only
    hits = reciprocal_rank_fusion([[1, 5], [2, 5]], k=60)
    assert hits[0].chunk_id == 5
    assert hits[0].score == 2 / 62


def test_fts_query_quotes_terms_and_drops_stop_words() -> None:
    from modelgrid.knowledge.sqlite_index import fts_query

    assert fts_query('The "assert" statement, and the AND') == '"assert" OR "statement"'
    assert fts_query("the of") == '"the" OR "of"'  # nothing but stop words: keep them
    assert fts_query("?! ...") is None
    assert fts_query('say "hi"') == '"say" OR "hi"'


def test_weights_scale_each_ranking() -> None:
    hits = reciprocal_rank_fusion([[1, 2], [2, 3]], weights=[3.0, 1.0])
    assert [(h.chunk_id, round(h.score, 9)) for h in hits] == [
        (2, round(3 / 62 + 1 / 61, 9)),
        (1, round(3 / 61, 9)),
        (3, round(1 / 62, 9)),
    ]
    text_only = reciprocal_rank_fusion([[1, 2], [2, 3]], weights=[0.0, 1.0])
    assert [(h.chunk_id, h.score) for h in text_only] == [(2, 1 / 61), (3, 1 / 62), (1, 0.0)]
