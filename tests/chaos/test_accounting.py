"""The chaos run's accounting: which outcomes are losses, conflicts or absorbed copies."""

from __future__ import annotations

from collections import Counter

from bench.chaos import account


def test_a_resent_record_dead_lettered_as_a_duplicate_is_absorbed_not_a_conflict() -> None:
    """A producer restarted after SIGKILL re-sends what it had not checkpointed, with the
    same ids: the worker scores the first copy and dead-letters the second as
    ``duplicate_source_id`` (or ``duplicate_content``). That is the pipeline working."""
    ids = ["a", "b", "c", "d", "e"]
    scored = Counter({"a": 1, "b": 1, "d": 2})
    dead = {
        "a": ["duplicate_source_id"],
        "b": ["non_english"],
        "c": ["duplicate_content"],
        "e": ["too_short"],
    }
    n_scored, n_dead, lost, conflicts, dups = account(ids, scored, dead)
    assert (n_scored, n_dead, lost, conflicts) == (2, 1, 1, 1)  # a, d scored; e dead; c lost; b both
    assert dups == 2  # a's dead-lettered copy, d's second scored copy
