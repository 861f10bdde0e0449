"""The chaos run's accounting: which outcomes are losses, conflicts or absorbed copies."""

from __future__ import annotations

from collections import Counter

from bench.chaos import account


def test_a_resent_record_dead_lettered_as_a_duplicate_is_absorbed_not_a_conflict() -> None:
    """A producer restarted after SIGKILL re-sends what it had not checkpointed, with the
    same ids: the worker scores the first copy and dead-letters the second as
    ``duplicate_source_id``. That is the pipeline working. A ``duplicate_content`` dead
    letter is an outcome of its own: another id carried the same text first."""
    ids = ["a", "b", "c", "d", "e", "f"]
    scored = Counter({"a": 1, "b": 1, "d": 2})
    dead = {
        "a": ["duplicate_source_id"],
        "b": ["non_english"],
        "c": ["duplicate_content"],
        "e": ["too_short"],
        "f": ["duplicate_source_id"],
    }
    n_scored, n_dead, lost, conflicts, dups = account(ids, scored, dead)
    assert (n_scored, n_dead, lost, conflicts) == (2, 2, 1, 1)  # a, d scored; c, e dead; f lost; b both
    assert dups == 2  # a's dead-lettered copy, d's second scored copy
