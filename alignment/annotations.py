"""Preference annotations collected from students: storage, undo, agreement, export.

``collected_annotations.json`` is one JSON object ``{"version": 1, "annotations": [record, ...]}``. Every write
takes an inter-process file lock (``filelock``), writes a temp file in the same directory, fsyncs it and
``os.replace``-s it over the old file, so the file on disk is always complete, valid JSON: a reader never
sees half a write, a writer killed mid-write leaves the previous version, and concurrent writers (threads,
processes, several students) are serialised, so no record is lost.

A record::

    {"id": "9f...", "timestamp": "2026-11-24T10:00:00+00:00", "annotator": "ana",
     "item_id": "3c1e...",            # hash of prompt + responses: the same item seen by two annotators
     "mode": "pairwise" | "ranking",
     "prompt": "...", "responses": ["...", "..."], "category": "helpful", "source": "dataset" | "generated",
     "choice": "A" | "B" | "tie" | "both_bad" | "skip",   # pairwise
     "ranking": [2, 0, 1],                                  # ranking: response indices, best first
     "rationale": "..."}

``alignment.data.annotations_to_pairs`` turns records into chosen/rejected pairs (a ranking of K gives
K(K-1)/2 pairs), so the file loads back as a training dataset.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from .data.formats import annotations_to_pairs

PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad", "skip")
ANNOTATIONS_FILE = "collected_annotations.json"


def item_id(prompt: str, responses: list[str]) -> str:
    """Stable id of an annotation item (same prompt and responses in the same order -> same id)."""
    h = hashlib.sha1(json.dumps([prompt, list(responses)], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()[:16]


def render_prompt(prompt) -> str:
    """A prompt (string or message list) as readable text: the last user turn, with earlier turns above it."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" if len(prompt) > 1 else m["content"] for m in prompt)


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: temp file in the same directory, fsync, ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def validate_record(rec: dict) -> dict:
    """Check a submitted annotation and return its canonical form (without id/timestamp).

    Raises:
        ValueError: empty annotator or prompt, fewer than 2 responses, an unknown choice, or a ranking that
            is not a permutation of the response indices (the message names the problem).
    """
    annotator = str(rec.get("annotator") or "").strip()
    if not annotator:
        raise ValueError("Enter your name (annotator) before submitting")
    if len(annotator) > 64:
        raise ValueError("Annotator name is too long (64 characters at most)")
    prompt = rec.get("prompt")
    if isinstance(prompt, list):  # a conversation: [{"role", "content"}, ...]
        if not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt):
            raise ValueError("A conversation prompt must be a list of {'role', 'content'} messages")
        prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
        empty = not any(m["content"].strip() for m in prompt)
    else:
        prompt = str(prompt or "").strip()
        empty = not prompt
    responses = [str(r) for r in rec.get("responses") or []]
    if empty:
        raise ValueError("The item has no prompt: load an item first")
    if len(responses) < 2:
        raise ValueError("An annotation needs at least two responses")
    out = {"annotator": annotator, "item_id": rec.get("item_id") or item_id(prompt, responses), "prompt": prompt,
           "responses": responses, "category": rec.get("category") or "annotated",
           "source": rec.get("source") or "dataset", "rationale": str(rec.get("rationale") or "").strip()}
    if rec.get("ranking") is not None:
        ranking = [int(i) for i in rec["ranking"]]
        if sorted(ranking) != list(range(len(responses))):
            raise ValueError(f"A ranking must order every response exactly once (ranks 1..{len(responses)}, "
                             f"no repeats); got positions {[r + 1 for r in ranking]}")
        out.update(mode="ranking", ranking=ranking)
    else:
        choice = rec.get("choice")
        if choice not in PAIRWISE_CHOICES:
            raise ValueError(f"Choice must be one of {', '.join(PAIRWISE_CHOICES)}; got {choice!r}")
        if len(responses) != 2:
            raise ValueError("A pairwise annotation compares exactly two responses")
        out.update(mode="pairwise", choice=choice)
    return out


class AnnotationStore:
    """``collected_annotations.json`` behind a file lock, with atomic writes.

    Args:
        path: the JSON file (created on first write; its directory is created).
        lock_timeout: seconds to wait for the lock before ``filelock.Timeout``.

    Raises:
        ValueError: the existing file is not a valid annotations file (it is never overwritten then).
    """

    def __init__(self, path: str | Path = ANNOTATIONS_FILE, lock_timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout)

    def _read(self) -> dict:
        if not self.path.is_file():
            return {"version": 1, "annotations": []}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                             "fix or move it, it was not modified") from exc
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise ValueError(f"{self.path} is not an annotations file (expected an object with 'annotations')")
        return data

    def records(self) -> list[dict]:
        """All records, oldest first."""
        with self.lock:
            return self._read()["annotations"]

    def add(self, rec: dict) -> dict:
        """Validate, stamp (id, UTC timestamp) and append one record; returns the stored record.

        Raises:
            ValueError: invalid record (see ``validate_record``).
        """
        stored = {"id": uuid.uuid4().hex, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  **validate_record(rec)}
        with self.lock:
            data = self._read()
            data["annotations"].append(stored)
            atomic_write_json(self.path, data)
        return stored

    def undo_last(self, annotator: str) -> dict | None:
        """Remove ``annotator``'s most recent record (only their own); returns it, or None if they have none."""
        with self.lock:
            data = self._read()
            for i in range(len(data["annotations"]) - 1, -1, -1):
                if data["annotations"][i].get("annotator") == annotator:
                    removed = data["annotations"].pop(i)
                    atomic_write_json(self.path, data)
                    return removed
        return None

    def history(self, annotator: str) -> list[dict]:
        return [r for r in self.records() if r.get("annotator") == annotator]

    def done_items(self, annotator: str) -> set[str]:
        return {r["item_id"] for r in self.history(annotator)}

    def counts(self) -> dict[str, int]:
        """Records per annotator."""
        out: dict[str, int] = defaultdict(int)
        for r in self.records():
            out[r.get("annotator", "?")] += 1
        return dict(out)

    def to_pairs(self) -> list[dict]:
        """Chosen/rejected rows derived from every record (see ``annotations_to_pairs``)."""
        return annotations_to_pairs(self.records())

    def export_trl(self, path: str | Path) -> tuple[Path, int]:
        """Write the derived pairs as TRL's explicit-prompt preference format (JSONL of prompt/chosen/rejected)."""
        rows = self.to_pairs()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                                    "category": r["category"]}, ensure_ascii=False) + "\n")
        return path, len(rows)


def agreement(records: list[dict]) -> dict:
    """Inter-annotator agreement on items annotated by more than one person.

    Pairwise records (skips excluded; labels A, B, tie, both_bad are nominal):
      * Cohen's kappa for every pair of annotators on their shared items (Cohen 1960),
        kappa = (p_o - p_e) / (1 - p_e), via ``sklearn.metrics.cohen_kappa_score``;
      * Krippendorff's alpha (nominal) over all shared items and annotators (Krippendorff 2011),
        alpha = 1 - D_o / D_e, via the ``krippendorff`` package.
    Ranking records: Krippendorff's alpha (ordinal) with one unit per (item, response) and the rank as value.

    Returns:
        ``{"pairwise": {"shared_items", "alpha", "kappa": [{"annotators", "n_items", "kappa"}]},
        "ranking": {"shared_items", "alpha"}}``; a statistic is None when undefined (too few shared items, or
        no variation at all).
    """
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    labels = {c: i for i, c in enumerate(PAIRWISE_CHOICES[:-1])}
    pair_votes: dict[str, dict[str, str]] = defaultdict(dict)  # item -> annotator -> label (last wins)
    rank_votes: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for r in records:
        if r.get("mode") == "ranking" and r.get("ranking"):
            rank_votes[r["item_id"]][r["annotator"]] = r["ranking"]
        elif r.get("choice") in labels:
            pair_votes[r["item_id"]][r["annotator"]] = r["choice"]

    def _alpha(matrix, level):
        values = np.asarray(matrix, dtype=float)
        if values.shape[1] == 0 or len(np.unique(values[~np.isnan(values)])) < 2:
            return None
        try:
            return float(krippendorff.alpha(reliability_data=values, level_of_measurement=level))
        except (ValueError, ZeroDivisionError):
            return None

    shared = {i: v for i, v in pair_votes.items() if len(v) > 1}
    annotators = sorted({a for v in shared.values() for a in v})
    kappas = []
    for a, b in itertools.combinations(annotators, 2):
        items = [i for i, v in shared.items() if a in v and b in v]
        if len(items) < 2:
            continue
        ya, yb = [shared[i][a] for i in items], [shared[i][b] for i in items]
        k = None if len(set(ya) | set(yb)) < 2 else float(cohen_kappa_score(ya, yb))
        kappas.append({"annotators": [a, b], "n_items": len(items), "kappa": k})
    matrix = [[labels[shared[i][a]] if a in shared[i] else np.nan for i in shared] for a in annotators]
    pairwise = {"shared_items": len(shared), "alpha": _alpha(matrix, "nominal") if shared else None, "kappa": kappas}

    rshared = {i: v for i, v in rank_votes.items() if len(v) > 1}
    rannotators = sorted({a for v in rshared.values() for a in v})
    units = []  # one column per (item, response): the rank each annotator gave it
    for i, votes in rshared.items():
        k = len(next(iter(votes.values())))
        for resp in range(k):
            units.append([votes[a].index(resp) + 1 if a in votes else np.nan for a in rannotators])
    rmatrix = np.asarray(units, dtype=float).T if units else np.zeros((0, 0))
    ranking = {"shared_items": len(rshared), "alpha": _alpha(rmatrix, "ordinal") if units else None}
    return {"pairwise": pairwise, "ranking": ranking}
