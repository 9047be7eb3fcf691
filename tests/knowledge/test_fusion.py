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


def test_min_max_and_theoretical_min_normalisation() -> None:
    from modelgrid.knowledge.fusion import normalized

    assert normalized([(1, 3.0), (2, 1.0), (3, 2.0)], "min-max", 0.0) == {1: 1.0, 2: 0.0, 3: 0.5}
    # theoretical-min: from the bound (-1 for a cosine) to the list's maximum
    assert normalized([(1, 1.0), (2, 0.0)], "theoretical-min", -1.0) == {1: 1.0, 2: 0.5}
    assert normalized([(5, 2.0)], "min-max", 0.0) == {5: 1.0}  # one candidate
    assert normalized([], "min-max", 0.0) == {}


def test_convex_combination_scores_and_order() -> None:
    from modelgrid.knowledge.fusion import convex_combination

    dense = [(1, 1.0), (2, 0.0)]  # cosine similarities from -1: n = 1.0, 0.5
    lexical = [(2, 8.0), (3, 4.0)]  # BM25 from 0: n = 1.0, 0.5
    hits = convex_combination(dense, lexical, dense_weight=0.5, normalization="theoretical-min")
    assert [(h.chunk_id, h.score) for h in hits] == [(2, 0.75), (1, 0.5), (3, 0.25)]
    # all the weight on the dense side: its order, a lexical-only chunk scores 0
    dense_only = convex_combination(
        dense, lexical, dense_weight=1.0, normalization="theoretical-min", limit=2
    )
    assert [(h.chunk_id, h.score) for h in dense_only] == [(1, 1.0), (2, 0.5)]
    # min-max spreads each list to 1.0 .. 0.0: 1 and 2 tie, the dense order first
    mm = convex_combination(dense, lexical, dense_weight=0.5, normalization="min-max")
    assert [(h.chunk_id, h.score) for h in mm] == [(1, 0.5), (2, 0.5), (3, 0.0)]


def test_convex_ties_keep_the_dense_order_then_the_lexical() -> None:
    from modelgrid.knowledge.fusion import convex_combination

    hits = convex_combination([(4, 0.5)], [(9, 3.0)], dense_weight=0.5, normalization="min-max")
    assert [(h.chunk_id, h.score) for h in hits] == [(4, 0.5), (9, 0.5)]


def test_fusion_weights_and_best_score() -> None:
    from modelgrid.knowledge.fusion import DEFAULT, Fusion

    assert DEFAULT.with_weights(3.0, 1.0).dense_weight == 0.75
    assert DEFAULT.with_weights(0.0, 2.0).dense_weight == 0.0
    assert DEFAULT.with_weights(1.0, 1.0).dense_weight == 0.5
    assert (DEFAULT.method, DEFAULT.dense_weight, DEFAULT.normalization, DEFAULT.depth) == (
        "convex",
        0.4,
        "min-max",
        100,
    )  # chosen by bench/retrieval_quality.py on its tune half
    assert DEFAULT.best_score() == 1.0
    rrf = Fusion("rrf", 0.5, 60)
    assert rrf.best_score() == 1 / 61
    hits = rrf.fuse([(1, 0.9), (2, 0.8)], [(2, 5.0)])
    assert [(h.chunk_id, h.score) for h in hits] == [(2, 0.5 / 62 + 0.5 / 61), (1, 0.5 / 61)]
    # first in both retrievers: the best score, whatever the method
    both = Fusion("convex", 0.3, normalization="theoretical-min").fuse(
        [(7, 0.4), (8, 0.1)], [(7, 2.0), (8, 1.0)]
    )
    assert both[0].chunk_id == 7
    assert both[0].score == 1.0
