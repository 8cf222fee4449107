"""`kit.gather.Gather`, the group commit of the contact quick creates: callers that arrive together share a
batch, no more than ``at_once`` batches run at a time, a lone caller goes at once, a batch's failure reaches each
of its callers, and a caller that is cancelled takes no one else's result with it."""

from __future__ import annotations

import asyncio

import pytest

from promoflow.kit.gather import Gather, first_of_each


class Recorder:
    """A batch writer that records its batches and holds each until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()
        self.fail: set[int] = set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        if self.fail & set(items):
            raise ValueError(f"refused {sorted(self.fail & set(items))}")
        return [i * 10 for i in items]


def test_callers_that_arrive_together_share_batches_with_at_most_at_once_running() -> None:
    async def run() -> tuple[list[int], Recorder]:
        rec = Recorder()
        gather = Gather(rec, at_once=2, most=8)
        calls = [asyncio.create_task(gather(i)) for i in range(20)]
        while rec.running < 1:  # the first batch has started (polling the recorder, not timing it)
            await asyncio.sleep(0)
        rec.release.set()
        return list(await asyncio.gather(*calls)), rec

    results, rec = asyncio.run(run())
    assert results == [i * 10 for i in range(20)]
    assert sorted(i for b in rec.batches for i in b) == list(range(20))  # each item in exactly one batch
    assert rec.most_running <= 2 and all(len(b) <= 8 for b in rec.batches)
    assert len(rec.batches) < 20  # shared: one statement served several callers


def test_a_lone_caller_goes_at_once() -> None:
    async def run() -> tuple[int, Recorder]:
        rec = Recorder()
        rec.release.set()
        gather = Gather(rec, at_once=2)
        return await gather(7), rec

    result, rec = asyncio.run(run())
    assert result == 70 and rec.batches == [[7]]


def test_a_batch_that_fails_fails_each_of_its_callers_and_no_other() -> None:
    async def run() -> list[object]:
        rec = Recorder()
        rec.fail = {3}
        gather = Gather(rec, at_once=1, most=4)
        calls = [asyncio.create_task(gather(i)) for i in range(8)]
        while rec.running < 1:
            await asyncio.sleep(0)
        rec.release.set()
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(run())
    failed = [i for i, r in enumerate(results) if isinstance(r, ValueError)]
    assert failed == [0, 1, 2, 3]  # the first batch (all eight were handed before it ran) carried 3
    assert all(r == i * 10 for i, r in enumerate(results) if i not in failed)


def test_a_cancelled_caller_does_not_cancel_the_batch_it_is_in() -> None:
    async def run() -> tuple[list[object], Recorder]:
        rec = Recorder()
        gather = Gather(rec, at_once=1)
        calls = [asyncio.create_task(gather(i)) for i in range(4)]
        while rec.running < 1:
            await asyncio.sleep(0)
        calls[0].cancel()
        rec.release.set()
        return list(await asyncio.gather(*calls, return_exceptions=True)), rec

    results, rec = asyncio.run(run())
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [10, 20, 30]
    assert sorted(i for b in rec.batches for i in b) == [0, 1, 2, 3]  # its item was written all the same


@pytest.mark.parametrize("at_once", [1, 3])
def test_items_handed_while_batches_run_wait_for_the_next(at_once: int) -> None:
    async def run() -> Recorder:
        rec = Recorder()
        gather = Gather(rec, at_once=at_once, most=64)
        first = [asyncio.create_task(gather(i)) for i in range(at_once)]
        while rec.running < 1:
            await asyncio.sleep(0)
        later = [asyncio.create_task(gather(100 + i)) for i in range(10)]
        rec.release.set()
        await asyncio.gather(*first, *later)
        return rec

    rec = asyncio.run(run())
    assert rec.batches[0] == list(range(at_once))  # the first task took everything handed before it ran
    assert sorted(i for b in rec.batches[1:] for i in b) == [100 + i for i in range(10)]
    assert len(rec.batches) == 2  # the later ones went together


def test_a_writer_that_answers_the_wrong_number_of_results_fails_its_callers_instead_of_leaving_them_waiting() -> (
    None
):
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    async def run() -> list[object]:
        gather = Gather(short, at_once=1)
        return list(await asyncio.gather(*(gather(i) for i in range(3)), return_exceptions=True))

    results = asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert all(isinstance(r, RuntimeError) for r in results)


def test_first_of_each_keeps_the_first_item_of_a_key_and_puts_its_repeats_in_a_later_round() -> None:
    keys = ["a", "b", "a", "c", "b", "a"]
    first, later = first_of_each(range(len(keys)), keys.__getitem__)
    assert first == {"a": 0, "b": 1, "c": 3} and later == [2, 4, 5]
    again, last = first_of_each(later, keys.__getitem__)
    assert again == {"a": 2, "b": 4} and last == [5]
