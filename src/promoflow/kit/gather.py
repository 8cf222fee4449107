"""Group commit for asyncio: concurrent callers' items of one kind written together.

Each caller hands its item and awaits its own result. A caller that finds fewer than ``at_once`` batches in
flight starts one at once with its item and whatever else is waiting (a lone request is never held back); the
items that arrive while ``at_once`` batches are in flight wait, and the next batch takes them all (up to
``most``). Batches run in tasks of their own, so a caller that is cancelled cancels no one else's write. So under load one statement and one commit serve many requests — the database's per-statement and
per-commit work and the driver's per-round-trip work are shared — and the wait a request adds is at most the
batch in flight before it.

``run`` gets the items of a batch and answers one result per item, in order; when it raises, every caller of
that batch gets the exception. Items belong to the event loop they were handed on (a server has one; a test
client may start several): on another loop the gatherer starts over, as the lane's pool does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Gather(Generic[T, R]):
    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, at_once: int = 2, most: int = 64
    ) -> None:
        self.run = run
        self.at_once = at_once
        self.most = most
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()  # (held: the loop keeps only weak references to tasks)
        self.batches = 0  # batches run, and the items they carried (for tests and the benchmarks)
        self.items = 0

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._waiting, self._running = loop, deque(), 0
        done: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, done))
        if self._running < self.at_once:
            self._running += 1
            # The batches run in tasks of their own: a caller that is cancelled (its client went away) does not
            # cancel the statement that carries other callers' items.
            task = loop.create_task(self._drain(loop))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._waiting and self._loop is loop:
                await self._batch()
        finally:
            if self._loop is loop:
                self._running -= 1

    async def _batch(self) -> None:
        batch = [self._waiting.popleft() for _ in range(min(self.most, len(self._waiting)))]
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self.run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items got {len(results)} results")
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), result in zip(batch, results, strict=True):  # (lengths checked above)
            if not done.done():  # (a caller that was cancelled has gone)
                done.set_result(result)


def first_of_each(
    todo: Iterable[int], key: Callable[[int], Hashable]
) -> tuple[dict[Hashable, int], list[int]]:
    """The batch items ``todo`` (indexes) split into the first of each ``key`` (key → index) and the ones that
    repeat a key: a statement that writes a row once per batch takes the first, the repeats go in a later round,
    after it (two redeems of one assignment, two changes of one contact)."""
    first: dict[Hashable, int] = {}
    later: list[int] = []
    for i in todo:
        k = key(i)
        if k in first:
            later.append(i)
        else:
            first[k] = i
    return first, later
