"""Prompt fingerprints and the prefix table (longest match, LRU bound, cache-size counts)."""

from __future__ import annotations

import random

from modelgrid.core.types import ChatMessage, InferenceRequest
from modelgrid.routing.policies import ReplicaSnapshot, choose_replica
from modelgrid.routing.prefix import PrefixTable, fingerprint, prompt_text


def test_fingerprint_chains_whole_blocks_only() -> None:
    a = fingerprint("x" * 100 + "A" * 30, block_chars=50)
    b = fingerprint("x" * 100 + "B" * 30, block_chars=50)
    assert len(a) == 2 and a == b  # the differing tail is not a whole block
    c = fingerprint("x" * 50 + "y" * 50, block_chars=50)
    assert c[0] == a[0] and c[1] != a[1]  # chained: block 2 depends on block 1 too
    assert fingerprint("short", block_chars=50) == ()
    assert len(fingerprint("z" * 10_000, block_chars=100, max_chars=1000)) == 10


def test_prompt_text_separates_roles_and_messages() -> None:
    def req(*msgs: tuple[str, str]) -> InferenceRequest:
        return InferenceRequest("r", "m", messages=[ChatMessage(r, c) for r, c in msgs])

    assert prompt_text(req(("system", "ab"), ("user", "c"))) != prompt_text(
        req(("system", "a"), ("user", "bc"))
    )
    assert prompt_text(InferenceRequest("r", "m", prompt="raw")) == "raw"


def test_longest_prefix_wins_and_recent_owner_first() -> None:
    t = PrefixTable(owners_per_prefix=2)
    shared = fingerprint("s" * 512, block_chars=128)  # 4 blocks
    longer = fingerprint("s" * 512 + "u" * 256, block_chars=128)  # same 4 + 2 more
    t.record(shared, "a")
    t.record(longer, "b")
    assert t.owners(longer) == (("b",), 6)
    assert t.owners(shared) == (("b", "a"), 4)
    other = fingerprint("s" * 256 + "v" * 256, block_chars=128)
    assert t.owners(other) == (("b", "a"), 2)  # shares the first two blocks
    assert t.owners(fingerprint("q" * 256, block_chars=128)) == ((), 0)


def test_lru_bound_and_owned_counts() -> None:
    t = PrefixTable(max_entries=4)
    t.record([1, 2, 3], "a")
    t.record([4, 5], "b")  # evicts block 1 (least recently used)
    assert len(t) == 4 and t.owners([1]) == ((), 0)
    assert (t.owned("a"), t.owned("b")) == (2, 2)
    t.record([2, 3], "b")  # b now served 2 and 3 last
    assert (t.owned("a"), t.owned("b")) == (0, 4)
    t.forget("b")
    assert t.owned("b") == 0 and t.owners([2, 3]) == (("a",), 2)
    assert t.owned("a") == 2


def test_new_prefixes_spread_over_equally_loaded_replicas() -> None:
    """With equal loads, a prefix nobody owns goes to the replica with the smaller cache, so
    two system prompts over two replicas end up one per replica (not both on one)."""
    t = PrefixTable()
    rng = random.Random(0)
    prompts = [fingerprint(c * 600, block_chars=256) for c in "PQ"]
    for i in range(20):
        blocks = prompts[i % 2]
        reps = [ReplicaSnapshot(r, "x", cached_prefixes=t.owned(r)) for r in ("a", "b")]
        owners, _ = t.owners(blocks)
        chosen = choose_replica(reps, owners=owners, rng=rng)
        t.record(blocks, chosen.replica_id)
    assert {t.owners(p)[0][0] for p in prompts} == {"a", "b"}
