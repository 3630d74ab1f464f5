"""Read coalescing: callers share a read only if it was sent after they arrived."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from freshlink.gate import AsyncReadGate, ReadGate


def test_a_lone_read_is_the_callers_own() -> None:
    gate = ReadGate()
    assert gate.read("k", lambda: 1, lambda r: -r) == 1
    assert gate.read("k", lambda: 2, lambda r: -r) == 2  # nothing left behind
    assert not gate._out


def test_callers_that_arrive_during_a_read_share_the_next_one() -> None:
    gate = ReadGate()
    sent = itertools.count(1)
    first_out = threading.Event()
    release_first = threading.Event()
    started: list[int] = []

    def do() -> int:
        n = next(sent)
        started.append(n)
        if n == 1:
            first_out.set()
            assert release_first.wait(5)
        return n

    results: dict[str, int] = {}

    def caller(name: str) -> None:
        results[name] = gate.read("k", do, lambda r: r)

    first = threading.Thread(target=caller, args=("first",))
    first.start()
    assert first_out.wait(5)
    # These arrive while read 1 is out: none of them may take its answer.
    late = [threading.Thread(target=caller, args=(f"late{i}",)) for i in range(5)]
    for t in late:
        t.start()
    # Give them time to queue (no timing is asserted: queued or not, the rule must hold).
    for t in late:
        t.join(0.05)
    release_first.set()
    first.join(5)
    for t in late:
        t.join(5)
    assert results["first"] == 1
    assert all(results[f"late{i}"] >= 2 for i in range(5))
    # Read 2 was sent after read 1 came back, on behalf of every caller queued by then.
    assert started[0] == 1
    assert len(started) <= 1 + 5
    assert not gate._out


def test_an_error_reaches_every_caller_of_the_read() -> None:
    gate = ReadGate()
    first_out = threading.Event()
    release_first = threading.Event()
    calls = itertools.count(1)

    def do() -> int:
        n = next(calls)
        if n == 1:
            first_out.set()
            assert release_first.wait(5)
            return n
        raise ConnectionError("down")

    outcomes: list[object] = []

    def caller() -> None:
        try:
            outcomes.append(gate.read("k", do, lambda r: r))
        except ConnectionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=caller)]
    threads[0].start()
    assert first_out.wait(5)
    threads += [threading.Thread(target=caller) for _ in range(3)]
    for t in threads[1:]:
        t.start()
    for t in threads[1:]:
        t.join(0.05)
    release_first.set()
    for t in threads:
        t.join(5)
    assert outcomes.count(1) == 1
    assert sum(isinstance(o, ConnectionError) for o in outcomes) == 3
    assert not gate._out


def test_the_shared_answer_goes_through_share() -> None:
    gate = ReadGate()
    out = threading.Event()
    go = threading.Event()
    calls = itertools.count(1)

    def do() -> str:
        n = next(calls)
        if n == 1:
            out.set()
            assert go.wait(5)
        return f"read{n}"

    got: list[str] = []
    a = threading.Thread(target=lambda: got.append(gate.read("k", do, str.upper)))
    a.start()
    assert out.wait(5)
    b = threading.Thread(target=lambda: got.append(gate.read("k", do, str.upper)))
    c = threading.Thread(target=lambda: got.append(gate.read("k", do, str.upper)))
    b.start()
    c.start()

    # Both are waiting for read 1 to end (a busy machine may take a while to get them there).
    def waiting() -> int:
        done = gate._out["k"].done
        return 0 if done is None else len(done._cond._waiters)

    for _ in range(500):
        if waiting() == 2:
            break
        threading.Event().wait(0.01)
    assert waiting() == 2
    go.set()
    for t in (a, b, c):
        t.join(5)
    # The first caller and the next read's sender see their own read; the other sees it shared.
    assert sorted(got) == ["READ2", "read1", "read2"]


@pytest.mark.parametrize("followers", [1, 4])
def test_asyncio_tasks_share_only_reads_sent_after_them(followers: int) -> None:
    async def main() -> None:
        gate = AsyncReadGate()
        calls = itertools.count(1)
        out = asyncio.Event()
        go = asyncio.Event()

        async def do() -> int:
            n = next(calls)
            if n == 1:
                out.set()
                await go.wait()
            return n

        first = asyncio.ensure_future(gate.read("k", do, lambda r: -r))
        await out.wait()
        late = [asyncio.ensure_future(gate.read("k", do, lambda r: -r)) for _ in range(followers)]
        await asyncio.sleep(0)
        go.set()
        assert await first == 1
        got = sorted(await asyncio.gather(*late))
        # One of them sent read 2; the others share it (negated by share).
        assert got == sorted([2] + [-2] * (followers - 1))
        assert next(calls) == 3
        assert not gate._tables[asyncio.get_running_loop()]

    asyncio.run(main())
