"""The staleness checker itself (pure, with hand-made histories)."""

from __future__ import annotations

from freshlink.testing.history import ReadRecord, WriteRecord, check


def test_read_after_ack_must_see_the_write() -> None:
    writes = [WriteRecord("a", 1, 0.0, 1.0), WriteRecord("a", 2, 2.0, 3.0)]
    ok = [ReadRecord("a", 1, 1.5, 1.6), ReadRecord("a", 2, 3.5, 3.6), ReadRecord("a", 1, 2.5, 3.5)]
    assert check(writes, ok) == []
    bad = ReadRecord("a", 1, 3.1, 3.2)
    (v,) = check(writes, [*ok, bad])
    assert v.read == bad
    assert v.expected_at_least == 2
    assert "v2" in str(v)


def test_bound_allows_late_reads_within_it() -> None:
    writes = [WriteRecord("a", 2, 0.0, 1.0)]
    late = ReadRecord("a", 1, 1.05, 1.06)
    assert check(writes, [late], bound=0.1) == []
    assert len(check(writes, [late], bound=0.01)) == 1


def test_unacknowledged_writes_promise_nothing() -> None:
    writes = [WriteRecord("a", 5, 0.0, None)]
    assert check(writes, [ReadRecord("a", 1, 9.0, 9.1)]) == []


def test_items_are_independent() -> None:
    writes = [WriteRecord("a", 3, 0.0, 1.0)]
    assert check(writes, [ReadRecord("b", 1, 2.0, 2.1)]) == []
