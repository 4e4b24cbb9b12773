"""Preference data loaders: detect the format of each row and normalise it.

Every loader yields the canonical row used everywhere in the project::

    {"prompt": [{"role": "user", "content": ...}, ...],  # the conversation so far (TRL conversational prompt)
     "chosen": str, "rejected": str,                       # the final assistant turn, preferred / dispreferred
     "category": str}

Supported row formats (detected per row, so mixed files work):

- TRL standard: ``prompt``/``chosen``/``rejected`` strings.
- TRL conversational: the same keys holding message lists; or implicit prompt (only ``chosen``/``rejected``
  message lists, the shared prefix becomes the prompt).
- Anthropic HH-RLHF: ``chosen``/``rejected`` transcripts ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``; the shared
  turns are the prompt, the last assistant turns the responses.
- Intel/orca_dpo_pairs: ``system``/``question``/``chosen``/``rejected``.
- ``collected_annotations.json`` records of the annotation platform (pairwise choices and K-way rankings,
  see ``annotations_to_pairs``).

Rows that cannot be used are skipped and counted by reason (``LoadReport``), never raised.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_TURN = re.compile(r"\n\n(Human|Assistant): ")


class BadRow(ValueError):
    """A row that cannot be turned into a preference pair; the message is the skip reason."""


@dataclass
class LoadReport:
    """What a loader kept and skipped. ``skipped`` maps reason -> count; ``examples`` one row index per reason."""

    source: str
    format: str = "unknown"
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def skip(self, index: int, reason: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, index)

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "kept": self.kept,
                "skipped": dict(self.skipped), "first_skipped_row": self.examples}

    def summary(self) -> str:
        text = f"{self.kept} pairs from {self.source} ({self.format})"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} ({r}, e.g. row {self.examples[r]})" for r, n in self.skipped.items())
        return text


def parse_hh_transcript(text: str) -> list[dict]:
    """Split an HH-RLHF transcript into messages.

    >>> parse_hh_transcript("\\n\\nHuman: hi\\n\\nAssistant: hello")
    [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]

    Raises:
        BadRow: the text does not start with a ``Human:`` turn.
    """
    parts = _TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    if parts[0].strip() or len(parts) < 3:
        raise BadRow("not an HH-RLHF transcript")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts) - 1, 2)]


def _split_conversations(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """Shared prefix -> prompt; last assistant turns -> responses."""
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise BadRow("last turn is not an assistant response")
    if chosen[:-1] != rejected[:-1]:
        raise BadRow("prompt differs between chosen and rejected")
    if not chosen[:-1]:
        raise BadRow("empty prompt")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def _as_messages(value, role: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise BadRow(f"{role} is neither a string nor a message list")


def _response_text(value) -> str:
    if isinstance(value, str):
        return value
    messages = _as_messages(value, "assistant")
    if messages[-1]["role"] != "assistant":
        raise BadRow("response message list does not end with an assistant turn")
    return messages[-1]["content"]


def detect_format(row: dict) -> str:
    """Name of the format of one row (``"hh-rlhf"``, ``"orca"``, ``"trl-standard"``, ...)."""
    if "question" in row and "chosen" in row:
        return "orca"
    if "prompt" in row and "chosen" in row:
        return "trl-conversational" if isinstance(row["prompt"], list) else "trl-standard"
    if "chosen" in row and "rejected" in row:
        if isinstance(row["chosen"], str) and "\n\nHuman:" in "\n\n" + row["chosen"].lstrip("\n"):
            return "hh-rlhf"
        if isinstance(row["chosen"], list):
            return "trl-implicit-prompt"
    raise BadRow("unknown format (expected prompt/chosen/rejected, HH-RLHF transcripts or orca columns)")


def normalize_row(row: dict) -> dict:
    """One raw row -> canonical row. Raises ``BadRow`` with the skip reason."""
    if not isinstance(row, dict):
        raise BadRow("row is not an object")
    if isinstance(row, SkippedRecord):
        raise BadRow(row.reason)
    fmt = detect_format(row)
    if fmt == "hh-rlhf":
        if not isinstance(row["rejected"], str):
            raise BadRow("rejected is not a transcript")
        prompt, chosen, rejected = _split_conversations(parse_hh_transcript(row["chosen"]),
                                                        parse_hh_transcript(row["rejected"]))
    elif fmt == "trl-implicit-prompt":
        prompt, chosen, rejected = _split_conversations(_as_messages(row["chosen"], "assistant"),
                                                        _as_messages(row["rejected"], "assistant"))
    elif fmt == "orca":
        prompt = [{"role": "user", "content": str(row["question"])}]
        if row.get("system"):
            prompt.insert(0, {"role": "system", "content": str(row["system"])})
        chosen, rejected = _response_text(row["chosen"]), _response_text(row.get("rejected"))
    else:
        if "rejected" not in row:
            raise BadRow("missing 'rejected'")
        prompt = _as_messages(row["prompt"], "user")
        chosen, rejected = _response_text(row["chosen"]), _response_text(row["rejected"])
    if not isinstance(chosen, str) or not isinstance(rejected, str) or not chosen.strip() or not rejected.strip():
        raise BadRow("empty response")
    if chosen.strip() == rejected.strip():
        raise BadRow("chosen and rejected are identical")
    if not any(m["content"].strip() for m in prompt):
        raise BadRow("empty prompt")
    return {"prompt": prompt, "chosen": chosen.strip(), "rejected": rejected.strip(),
            "category": str(row.get("category") or "general"), "_format": fmt}


MAX_RANKED = 6  # answers in one ranking record (the annotation platform's K = 3..6)


class SkippedRecord(dict):
    """A collected-annotation record that cannot be read, in the row stream so the loader counts it (a marker
    type, so that no key a user file can contain is mistaken for it)."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason


def annotations_to_pairs(records: list, keep_skipped: bool = False) -> list[dict]:
    """Collected annotations -> preference rows.

    A pairwise record ``{"prompt", "responses": [a, b], "choice": "A"|"B"|...}`` gives one pair when the choice is
    A or B (ties, "both bad" and skips carry no preference). A ranking record ``{"prompt", "responses": [...],
    "ranking": [best index, ..., worst index]}`` gives every ordered pair (K*(K-1)/2 pairs).

    A malformed record (not an object, responses not a list of strings, a ranking that is not a permutation of
    the response indices) is skipped, never fatal; with ``keep_skipped`` it becomes a ``SkippedRecord`` that
    ``normalize_rows`` counts under its reason.
    """
    rows = []
    for rec in records:
        reason = _malformed_annotation(rec)
        if reason:
            if keep_skipped:
                rows.append(SkippedRecord(f"malformed annotation ({reason})"))
            continue
        prompt, responses = rec.get("prompt"), rec["responses"]
        category = rec.get("category") if isinstance(rec.get("category"), str) and rec.get("category") else "annotated"
        if rec.get("ranking"):
            order = [responses[i] for i in rec["ranking"]]
            for i in range(len(order)):
                for j in range(i + 1, len(order)):
                    rows.append({"prompt": prompt, "chosen": order[i], "rejected": order[j], "category": category})
        elif rec.get("choice") in ("A", "B") and len(responses) == 2:
            good = 0 if rec["choice"] == "A" else 1
            rows.append({"prompt": prompt, "chosen": responses[good], "rejected": responses[1 - good],
                         "category": category})
    return rows


def _malformed_annotation(rec) -> str | None:
    """Why ``rec`` cannot be read as an annotation record, or None when it can."""
    if not isinstance(rec, dict):
        return "not an object"
    responses = rec.get("responses")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        return "responses is not a list of strings"
    ranking = rec.get("ranking")
    if ranking:
        if (not isinstance(ranking, list) or not all(type(i) is int for i in ranking)
                or sorted(ranking) != list(range(len(responses))) or len(ranking) > MAX_RANKED):
            return "ranking is not a permutation of the response indices"
    return None


def read_rows(path: str | Path) -> tuple[list[dict], str]:
    """Raw rows of a local file (.json, .jsonl, .jsonl.gz, .json.gz, .csv, .parquet) and a format hint.

    Raises:
        FileNotFoundError, ValueError: missing file, unknown extension, or a line that is not JSON
        (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Dataset file not found: {path}")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        rows = []
        with opener(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}: line {i} is not valid JSON ({exc.msg})") from exc
        return rows, "jsonl"
    if name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        if isinstance(data, dict) and "annotations" in data:
            return annotations_to_pairs(data["annotations"], keep_skipped=True), "collected-annotations"
        if isinstance(data, dict):
            data = data.get("data") or data.get("rows") or data.get("train") or []
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of rows or an object with 'annotations'")
        return data, "json"
    if name.endswith((".csv", ".parquet")):
        from datasets import load_dataset

        kind = "csv" if name.endswith(".csv") else "parquet"
        ds = load_dataset(kind, data_files=str(path), split="train")
        return ds.to_list(), kind
    raise ValueError(f"{path}: unsupported file type (use .json, .jsonl, .jsonl.gz, .csv or .parquet)")


def normalize_rows(rows: list[dict], source: str) -> tuple[list[dict], LoadReport]:
    """Normalise raw rows, skipping bad ones with a counted reason."""
    report, out, formats = LoadReport(source=source), [], Counter()
    for i, row in enumerate(rows):
        try:
            norm = normalize_row(row)
        except BadRow as exc:
            report.skip(i, str(exc))
            continue
        formats[norm.pop("_format")] += 1
        out.append(norm)
    report.kept = len(out)
    report.format = "+".join(f for f, _ in formats.most_common()) or "unknown"
    return out, report
