"""Micro-batching: requests that arrive within a short window and can share one call run as one batch.

Several students pressing Generate in Compare within a second ask the same model the same kind of question; on a
CPU one generate call for 3 prompts costs far less than 3 calls (the weights are read once per token for the whole
batch). ``MicroBatcher.submit`` is called from each request's thread: the first request with a new key waits up to
``window_s`` for others with the same key (or until ``max_batch`` have joined), runs the batch, and every request
gets its own result. Requests with different keys (other models, other decoding settings) never share a batch.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable


class _Batch:
    def __init__(self):
        self.items: list = []
        self.full, self.done = threading.Event(), threading.Event()
        self.results: list | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Runs ``run(key, items) -> results`` (one result per item, in order) once per batch of same-key requests.

    Args:
        run: the batched call; its exception is raised in every request of the batch.
        window_s: how long the first request of a batch waits for others; max_batch: the most items per batch.
        execute: ``execute(fn)`` runs ``fn()`` where the batch must run and returns its result (the model pool's
            thread, ``ModelPool.run``). The batch closes only when it starts there: requests that arrive while an
            earlier batch still holds that thread join it, so under load the batches grow instead of queueing
            one by one. Default: run in the first request's thread.
    """

    def __init__(self, run: Callable, window_s: float = 0.3, max_batch: int = 8, execute: Callable | None = None):
        self.run, self.window_s, self.max_batch = run, window_s, max_batch
        self.execute = execute or (lambda fn: fn())
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch] = {}
        self.sizes: list[int] = []  # every batch's size, for tests and benchmarks

    def submit(self, key: Hashable, item):
        """The result for ``item``, computed in a batch with the other ``key`` requests of the same window."""
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if leader:
                batch = self._open[key] = _Batch()
            index = len(batch.items)
            batch.items.append(item)
            if len(batch.items) >= self.max_batch:
                batch.full.set()
                self._open.pop(key, None)  # later requests start a new batch
        if not leader:
            batch.done.wait()
        else:
            batch.full.wait(self.window_s)

            def work():
                with self._lock:  # closed now, where it runs: later requests start the next batch
                    if self._open.get(key) is batch:
                        del self._open[key]
                    items = list(batch.items)
                self.sizes.append(len(items))
                return self.run(key, items)

            try:
                batch.results = self.execute(work)
            except BaseException as exc:  # noqa: BLE001 - handed to every request of the batch
                batch.error = exc
            finally:
                batch.done.set()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]
