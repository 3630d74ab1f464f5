"""Which generations a fill extends (pure bookkeeping, with a clock passed in)."""

from __future__ import annotations

from freshlink.backends._kept import MAX_NAMES, Kept


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_fill_extends_what_this_process_did_not_extend_lately() -> None:
    clock = Clock()
    kept = Kept(gen_ttl=30.0, clock=clock)
    ext, flags, stored = kept.plan(["k:a", "t:b"], 60.0, "run")
    assert (ext, flags) == ("90000", "11")  # the entry's 60 s plus gen_ttl
    assert stored(True) is True
    clock.t += 10
    # Extended 10 s ago to live 90 s: another 60 s entry needs no more; a new key does.
    assert kept.plan(["k:c", "t:b"], 60.0, "run")[1] == "10"
    # An entry kept longer than the extension covers extends it again.
    assert kept.plan(["t:b"], 100.0, "run")[1] == "1"
    clock.t += 20  # gen_ttl since the extension: it may have been lost and re-created since
    assert kept.plan(["t:b"], 1.0, "run")[1] == "1"


def test_only_a_stored_fill_counts_and_a_new_server_forgets_everything() -> None:
    clock = Clock()
    kept = Kept(gen_ttl=30.0, clock=clock)
    _, _, stored = kept.plan(["t:b"], 60.0, "run")
    assert stored(False) is False  # the script extends nothing when it stores nothing
    assert kept.plan(["t:b"], 60.0, "run")[1] == "1"
    kept.plan(["t:b"], 60.0, "run")[2](True)
    assert kept.plan(["t:b"], 60.0, "run")[1] == "0"
    assert kept.plan(["t:b"], 60.0, "restarted")[1] == "1"  # its data may be gone


def test_entries_kept_for_ever_persist_their_generations_once() -> None:
    clock = Clock()
    kept = Kept(gen_ttl=30.0, clock=clock)
    ext, flags, stored = kept.plan(["t:b"], None, "run")
    assert (ext, flags) == ("-1", "1")
    stored(True)
    clock.t += 29
    assert kept.plan(["t:b"], None, "run")[1] == "0"
    assert kept.plan(["t:b"], 1e9, "run")[1] == "0"


def test_the_record_is_bounded() -> None:
    kept = Kept(gen_ttl=30.0, clock=Clock())
    for i in range(MAX_NAMES + 2):
        kept.plan([f"t:{i}"], 60.0, "run")[2](True)
    # Forgotten at once past the bound: the next fills extend again (never too little).
    assert kept.plan(["t:0"], 60.0, "run")[1] == "1"
    assert len(kept._until) <= MAX_NAMES + 1


def test_generations_a_read_created_for_the_fill_are_not_extended_by_it() -> None:
    clock = Clock()
    kept = Kept(gen_ttl=30.0, clock=clock)
    # The read sent seed 500 and created the names whose value is the seed plus their position
    # (k:a at 1, t:c at 3), to live 90 s; t:b already existed with another value.
    kept.created(["k:a", "t:b", "t:c"], [501, 7, 503], 500, 90.0, "run")
    clock.t += 1  # the load
    assert kept.plan(["k:a", "t:b", "t:c"], 60.0, "run")[1] == "010"
    assert kept.plan(["k:a"], 95.0, "run")[1] == "1"  # a longer entry than they were made for
    # Created under a server that has restarted since: nothing is known of them.
    kept.created(["k:d"], [501], 500, 90.0, "run")
    assert kept.plan(["k:d"], 60.0, "restarted")[1] == "1"
