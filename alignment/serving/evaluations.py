"""Finished evaluations, kept so that a report of the same models is not evaluated again.

In a class, most students build their report from the class models: the same runs, evaluation prompts, answers
per prompt and seed, so the same answers, scores and win rates (sampling noise is keyed by prompt and sample,
``alignment.generation.GumbelNoiseSampler``). The first report pays for the evaluation (about 35 s with one
answer per prompt here, more with more answers); the next ones reuse it instead of queueing behind each other on
the model thread. A student who picks a run of their own gets a key of their own.

The key is every input that decides the evaluation (``evaluation_key``); runs are immutable once finished (a
retrained model is a new run, with a new key). The LLM judge and the arena votes are added after, to a copy:
votes change while the class votes. The judge keeps its decided pairs in an ``EvaluationCache`` of its own
(``alignment.judge.Judge``'s ``verdicts``), so a pair is paid for once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict


def evaluation_key(**inputs) -> str:
    """A sha256 of ``inputs`` (JSON with sorted keys; paths and other objects by ``str``): e.g. the runs' keys,
    the evaluation prompts, answers per prompt, seed and length budget."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class EvaluationCache:
    """The last ``max_entries`` evaluations of this server (whole ones, or the judge's verdicts on single pairs) by
    key, the least recently used dropped first. Thread-safe; ``get`` and ``put`` copy, so a caller that adds to
    its evaluation (the judge, the votes, the report) never changes the stored one. Memory: about 0.5 MB per
    evaluation of 4 models x 120 answers, about 1 kB per verdict."""

    def __init__(self, max_entries: int = 8):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        """A copy of the evaluation stored under ``key``, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return copy.deepcopy(item)

    def put(self, key: str, evaluation: dict) -> None:
        """Store a copy of ``evaluation`` under ``key``."""
        item = copy.deepcopy(evaluation)
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
