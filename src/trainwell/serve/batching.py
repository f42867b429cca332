"""Micro-batching: small concurrent requests share one forward pass, run off the event loop.

A request's rows go into a queue and wait for their outputs. One task on the event loop takes
what is queued and runs the model on the concatenated rows in a worker thread, one batch at a
time (so torch never runs two batches at once, and the event loop keeps accepting requests). While the
model runs, new requests queue up and form the next batch, so under load batches grow by
themselves. Before running a batch of fewer than ``max_rows`` rows, the task waits for the
requests still being read and parsed (``incoming``), at most ``max_wait_s``: a lone request
never waits, a burst of concurrent ones shares one forward pass.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from .inputs import RequestError

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Run ``run_batch(items) -> results`` on the items of many requests at once.

    Args:
        run_batch: called in a worker thread, one call at a time, with a list of items (anything with a
            ``len``: its number of rows); returns one result per item, in order, or for an item
            an ``Exception`` instance, which its request raises.
        max_rows: rows per batch at most (a larger request runs alone, never split).
        max_wait_s: how long a batch waits for more requests once one is queued.
        max_pending: requests queued or running at most; beyond, ``submit`` answers 503.
    """

    def __init__(self, run_batch, max_rows: int, max_wait_s: float, max_pending: int):
        self.run_batch, self.max_rows, self.max_wait_s = run_batch, max_rows, max_wait_s
        self.max_pending = max_pending
        self.batches = self.rows = 0  # counters for /health
        self._queue: collections.deque = collections.deque()
        self._queued_rows = 0
        self._pending = 0
        self._incoming = 0
        self._task = self._arrived = self._loop = None
        # One batch at a time, in anyio's worker threads: their hand-over measured ~0.4 ms where a
        # ThreadPoolExecutor's run_in_executor took ~7 ms on a loaded 2-core machine.
        import anyio  # comes with the `serve` extra (Starlette), so imported only when serving

        self._limiter = anyio.CapacityLimiter(1)

    @contextlib.contextmanager
    def incoming(self):
        """Marks a request whose rows are on their way (being read and parsed): batches wait for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if self._arrived is not None:
                self._arrived.set()  # wake the gatherer: rows arrived, or this request failed

    async def submit(self, x):
        """The result of ``run_batch`` for the item ``x``.

        Raises:
            RequestError: 503 when ``max_pending`` requests are already waiting.
        """
        self._ensure_started()
        if self._pending >= self.max_pending:
            raise RequestError(503, "busy", f"The server is busy ({self._pending} requests waiting). "
                                            f"Retry in a moment.")
        future = self._loop.create_future()
        self._queue.append((x, future))
        self._queued_rows += len(x)
        self._pending += 1
        self._arrived.set()
        try:
            return await future
        finally:
            self._pending -= 1

    def _ensure_started(self) -> None:
        # Started by the first request rather than by the app's lifespan, so an app mounted inside
        # another (which gets no lifespan events) still works; restarted if the loop changed.
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            self._loop, self._arrived = loop, asyncio.Event()
            self._task = loop.create_task(self._run(), name="trainwell-micro-batcher")

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._gather()
            batch = self._take()
            await self._execute(batch)

    async def _gather(self) -> None:
        """Wait up to ``max_wait_s`` for the requests on their way, unless the batch is already full."""
        deadline = self._loop.time() + self.max_wait_s
        while self._queued_rows < self.max_rows and self._incoming > 0:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list:
        """Queued requests up to ``max_rows`` rows (at least one request), first come first served."""
        batch, rows = [], 0
        while self._queue and (not batch or rows + len(self._queue[0][0]) <= self.max_rows):
            x, future = self._queue.popleft()
            self._queued_rows -= len(x)
            if not future.done():  # a client that went away leaves a cancelled future
                batch.append((x, future))
                rows += len(x)
        return batch

    async def _execute(self, batch: list) -> None:
        from anyio import to_thread

        if not batch:
            return
        items = [x for x, _ in batch]
        try:
            results = await to_thread.run_sync(self.run_batch, items, limiter=self._limiter)
        except asyncio.CancelledError:
            _fail(batch, RequestError(503, "shutting_down", "The server stopped before this request ran."))
            raise
        except Exception as exc:  # the model failed: every request of the batch gets the error
            _fail(batch, exc)
            return
        self.batches += 1
        self.rows += sum(map(len, items))
        for result, (_, future) in zip(results, batch):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def stop(self) -> None:
        """Stop the batching task; requests still queued get a 503.

        The server calls it at shutdown, after the requests in flight have been answered.
        """
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        _fail(self._queue, RequestError(503, "shutting_down", "The server is shutting down."))
        self._queue.clear()
        self._queued_rows = 0


def _fail(batch, exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
