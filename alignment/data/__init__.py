"""Preference datasets: load (any supported format), fit to the length budget, split, describe.

Data flow: ``load_preference_dataset`` -> ``fit_to_length`` -> ``split_pairs`` -> trainers.
What a browser or API user may load is confined by ``resolve_dataset_source`` (``alignment.data.sources``).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .builtin import DATA_DIR, EVAL_PROMPTS_FILE, PREFERENCES_FILE, write_builtin
from .formats import BadRow, LoadReport, annotations_to_pairs, normalize_rows, read_rows
from .sources import (BUILTIN, DataFolder, DisallowedSource, data_folders, display_path, hub_allowed, redact_paths,
                      resolve_dataset_source)

__all__ = [
    "BUILTIN", "BadRow", "DATA_DIR", "DataFolder", "DisallowedSource", "LoadReport", "annotations_to_pairs",
    "data_folders", "dataset_statistics", "display_path", "fit_to_length", "hub_allowed", "load_eval_prompts",
    "load_preference_dataset", "redact_paths", "resolve_dataset_source", "seen_in_training", "skip_summary",
    "split_pairs", "to_trl_preference", "write_builtin",
]


def load_preference_dataset(source: str = BUILTIN, split: str = "train", max_pairs: int | None = None, *,
                            name: str | None = None):
    """Load preference pairs from the built-in set, a local file or a hub dataset id.

    Args:
        source: ``"builtin"``, a path (.json/.jsonl/.jsonl.gz/.csv/.parquet, or ``collected_annotations.json``)
            or a Hugging Face dataset id (needs internet), e.g. ``Anthropic/hh-rlhf``, ``Intel/orca_dpo_pairs``.
        split: split name for hub datasets.
        max_pairs: keep the first ``max_pairs`` valid pairs.
        name: how the report names the source (default: the source as given; the app passes a name without
            server paths).

    Returns:
        ``(rows, report)``: canonical rows (see ``alignment.data.formats``) and a ``LoadReport``.

    Raises:
        FileNotFoundError / ValueError: unreadable source, or no valid pair in it (the message gives skip reasons).
    """
    if source == BUILTIN:
        if not PREFERENCES_FILE.is_file():
            write_builtin()
        raw, hint = read_rows(PREFERENCES_FILE)
        name = "built-in (data/preferences.jsonl)"
    elif Path(source).expanduser().exists():
        raw, hint = read_rows(Path(source).expanduser())
        name = name or str(source)
    elif "/" in source and not source.startswith((".", "/")) and not Path(source).suffix:
        from datasets import load_dataset

        # hf://datasets/ makes datasets go to the hub even if a local folder of that name appears meanwhile
        raw, hint, name = load_dataset(f"hf://datasets/{source}", split=split).to_list(), "hub", name or source
    else:
        raise FileNotFoundError(f"Dataset not found: {source!r} (expected 'builtin', a file path or a hub id)")
    rows, report = normalize_rows(raw, name)
    if hint == "collected-annotations":
        report.format = "collected-annotations"
    if not rows:
        raise ValueError(f"No usable preference pair in {name}: " + (report.summary() or "empty"))
    if max_pairs:
        rows = rows[:max_pairs]
        report.kept = len(rows)
    return rows, report


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_tokens(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])


def fit_to_length(rows: list[dict], tokenizer, max_prompt_tokens: int, max_response_tokens: int,
                  report: LoadReport | None = None) -> list[dict]:
    """Fit pairs into the length budget so every method sees the same, bounded inputs.

    Prompts keep their most recent turns (starting at a user turn) that fit in ``max_prompt_tokens`` (chat
    template included); a pair whose last user turn alone is too long is skipped ("prompt too long").
    Responses longer than ``max_response_tokens`` are cut to that many tokens (the same cut for all methods).
    """
    out = []
    for i, row in enumerate(rows):
        prompt = row["prompt"]
        starts = [k for k, m in enumerate(prompt) if m["role"] == "user"]
        fitted = next((prompt[k:] for k in starts if _prompt_tokens(tokenizer, prompt[k:]) <= max_prompt_tokens), None)
        if fitted is None:
            if report is not None:
                report.skip(i, "prompt too long")
            continue
        new = dict(row, prompt=fitted)
        for key in ("chosen", "rejected"):
            ids = tokenizer(row[key], add_special_tokens=False)["input_ids"]
            if len(ids) > max_response_tokens:
                new[key] = tokenizer.decode(ids[:max_response_tokens]).strip()
        if new["chosen"] == new["rejected"]:
            if report is not None:
                report.skip(i, "chosen and rejected identical after truncation")
            continue
        out.append(new)
    if report is not None:
        report.kept = len(out)
    return out


def skip_summary(report: LoadReport | None) -> str:
    """``"90 skipped (prompt too long: 90)"``: how many rows the report skipped and why ("" when none)."""
    if report is None or not report.skipped:
        return ""
    reasons = ", ".join(f"{reason}: {n}" for reason, n in report.skipped.most_common())
    return f"{sum(report.skipped.values())} skipped ({reasons})"


def split_pairs(rows: list[dict], eval_fraction: float = 0.1, seed: int = 42, min_eval: int = 8,
                report: LoadReport | None = None):
    """Deterministic train / held-out split (``datasets.Dataset.train_test_split`` with ``seed``).

    Args:
        report: the ``LoadReport`` of ``rows`` (loading and ``fit_to_length``); its skips go into the error.

    Returns:
        ``(train_rows, heldout_rows)``.

    Raises:
        ValueError: fewer than ``2 * min_eval`` pairs (with how many rows were skipped and why).
    """
    from datasets import Dataset

    if len(rows) < 2 * min_eval:
        skipped = skip_summary(report)
        raise ValueError(f"Need at least {2 * min_eval} preference pairs, got {len(rows)}"
                         + (f": {skipped}" if skipped else ""))
    n_eval = max(min_eval, int(round(len(rows) * eval_fraction)))
    parts = Dataset.from_list(rows).train_test_split(test_size=n_eval, seed=seed)
    return parts["train"].to_list(), parts["test"].to_list()


def to_trl_preference(rows: list[dict]):
    """Canonical rows -> TRL conversational preference ``Dataset`` (prompt/chosen/rejected message lists)."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in rows
    ])


def _describe(values: list[int]) -> dict:
    if not values:
        return {"mean": 0.0, "median": 0.0, "min": 0, "max": 0}
    return {"mean": round(statistics.fmean(values), 2), "median": float(statistics.median(values)),
            "min": min(values), "max": max(values)}


def dataset_statistics(rows: list[dict], tokenizer) -> dict:
    """Pair count, per-category counts and token lengths (mean/median/min/max) of prompt, chosen and rejected.

    Prompt length counts the chat-templated prompt; response lengths count response tokens only.
    """
    cats: dict[str, int] = {}
    for r in rows:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    return {
        "pairs": len(rows),
        "categories": dict(sorted(cats.items())),
        "prompt_tokens": _describe([_prompt_tokens(tokenizer, r["prompt"]) for r in rows]),
        "chosen_tokens": _describe([_n_tokens(tokenizer, r["chosen"]) for r in rows]),
        "rejected_tokens": _describe([_n_tokens(tokenizer, r["rejected"]) for r in rows]),
    }


def load_eval_prompts(path: str | Path | None = None) -> list[dict]:
    """Evaluation prompts ``[{"category", "prompt"}]``, with the ``rule`` the ``rules`` evaluator checks where the
    file gives one (``alignment.rules``; the built-in prompts carry theirs). Default: ``data/eval_prompts.json``."""
    path = Path(path) if path else EVAL_PROMPTS_FILE
    if path == EVAL_PROMPTS_FILE and not path.is_file():
        write_builtin()
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or not all(isinstance(r, dict) and r.get("prompt") for r in records):
        raise ValueError(f"{path}: expected a list of {{'category', 'prompt'}} objects")
    return [{"category": r.get("category", "general"), "prompt": r["prompt"],
             **({"rule": r["rule"]} if isinstance(r.get("rule"), dict) else {})} for r in records]


def seen_in_training(eval_prompts: list[dict], train_rows: list[dict]) -> dict:
    """The evaluation prompts that are also training prompts (the same text, or the same conversation; a
    conversation of one user turn is that turn's text, as the loaders store a plain prompt), which a model may have
    learnt the answers to: ``{"count", "of", "prompts"}`` (the first 5 such prompts, as text)."""
    def key(prompt) -> str:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], dict) \
                and prompt[0].get("role") == "user" and isinstance(prompt[0].get("content"), str):
            prompt = prompt[0]["content"]
        return prompt.strip() if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)

    trained = {key(r["prompt"]) for r in train_rows}
    seen = [row["prompt"] for row in eval_prompts if key(row["prompt"]) in trained]
    return {"count": len(seen), "of": len(eval_prompts), "prompts": [key(p) for p in seen[:5]]}

