"""A session: where the model comes from, its tokenizer, the one shared length/decoding config, and the data.

The headless pipeline, the app's manager and every worker process build one ``Session`` from the same few
values (model name, preset, overrides, seed), so a run trained in a worker sees exactly the model, length budget
and data fitting the server shows. The session's configs are the preset's and are never overwritten by a run:
a short run from the Train tab does not change how the class's data is fitted or how long the evaluation and the
arena decode.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

from .config import METHODS, make_config
from .data import (BUILTIN, dataset_statistics, fit_to_length, load_eval_prompts, load_preference_dataset,
                   split_pairs)
from .models import DEFAULT_MODEL, ModelSource, load_tokenizer, resolve_model

logger = logging.getLogger("class7")


@dataclass(frozen=True)
class DatasetChoice:
    """Which preference data a training uses: ``source`` (``"builtin"``, a confined file path or a hub id),
    ``name`` (how pages name it, without server paths; None: as given) and ``max_pairs``."""

    source: str = BUILTIN
    name: str | None = None
    max_pairs: int | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "name": self.name, "max_pairs": self.max_pairs}


@dataclass
class Session:
    """Model source, tokenizer, preset configs and loaded data (see the module docstring).

    Args:
        model_name: hub id, local checkpoint directory or ``"tiny"`` (tests).
        preset: ``"classroom"`` or ``"quick"``; ``overrides``: ``{"all" | method: {field: value}}``.
        eval_prompts: path of the evaluation prompts (None: ``data/eval_prompts.json``); ``max_eval_prompts``
            keeps the first N.
        source: an already resolved ``ModelSource`` as a dict (a worker gets the server's, ``to_dict``), so that a
            run trains on the very weights the server generates with: resolving again in the worker could pick
            the hub's weights where the server found the hub unreachable and uses the embedded GGUF.

    Raises:
        ValueError: an invalid preset or override (every method's config is validated at construction).
    """

    model_name: str = DEFAULT_MODEL
    preset: str = "classroom"
    overrides: dict = field(default_factory=dict)
    seed: int = 42
    eval_prompts: str | None = None
    max_eval_prompts: int | None = None
    source: dict | ModelSource | None = None

    def __post_init__(self):
        if isinstance(self.source, dict):
            self.source = ModelSource(**self.source)
        self.tokenizer = None
        self.configs = {m: self.config_for(m) for m in METHODS}  # validated now

    def config_for(self, method: str, preset: str | None = None, **extra):
        """The resolved config of ``method`` (``preset``, default the session's, + overrides + ``extra``).
        Raises ValueError if invalid."""
        values = {"seed": self.seed, **self.overrides.get("all", {}), **self.overrides.get(method, {}), **extra}
        return make_config(method, preset or self.preset, **values)

    @property
    def lengths(self):
        """The length budget every method shares (``max_prompt_length``, ``max_completion_length``): data fitting,
        the evaluation and annotation candidates use it."""
        return self.configs["dpo"]

    def setup_model(self) -> dict:
        """Resolve the model source and load the tokenizer once (weights load per run); returns a description."""
        if self.tokenizer is None:
            t = time.time()
            self.source = self.source or resolve_model(self.model_name)
            self.tokenizer = load_tokenizer(self.source)
            logger.info("Model: %s (%.1fs)", self.source.description, time.time() - t)
        return {"model": self.model_name, "source": self.source.kind, "path": self.source.path,
                "description": self.source.description, "vocab_size": len(self.tokenizer)}

    def load_data(self, choice: DatasetChoice = DatasetChoice()) -> dict:
        """Load ``choice``, fit it to the length budget and split it; with the evaluation prompts.

        Returns:
            ``{"train", "heldout", "eval_prompts", "load_report", "statistics", "pairs"}``; ``pairs``: the loaded
            pairs before fitting, for a reward model with its own length budget (``fit_for``).

        Raises:
            FileNotFoundError / ValueError: unreadable source or no usable pair (the message says why).
        """
        self.setup_model()
        pairs, report = load_preference_dataset(choice.source, max_pairs=choice.max_pairs, name=choice.name)
        rows = fit_to_length(pairs, self.tokenizer, self.lengths.max_prompt_length,
                             self.lengths.max_completion_length, report)
        train, heldout = split_pairs(rows, seed=self.seed, report=report)
        logger.info("Dataset: %s", report.summary())
        return {"train": train, "heldout": heldout, "eval_prompts": self.load_eval_prompts(),
                "load_report": report.to_dict(),
                "statistics": {"train": dataset_statistics(train, self.tokenizer),
                               "heldout": dataset_statistics(heldout, self.tokenizer)}, "pairs": pairs}

    def fit_for(self, cfg, data: dict) -> tuple[list, list]:
        """The training and held-out pairs of ``data`` for a run with config ``cfg``: ``data``'s own when ``cfg``
        has the shared length budget (``lengths``); else the loaded pairs fitted to ``cfg``'s budget and split
        with the same seed. Only the reward model may have its own budget (it generates nothing: HH-RLHF answers
        are longer than the 32 tokens a policy samples; README "The reward model on HH-RLHF")."""
        budget = (cfg.max_prompt_length, cfg.max_completion_length)
        if budget == (self.lengths.max_prompt_length, self.lengths.max_completion_length) or not data.get("pairs"):
            return data["train"], data["heldout"]
        return split_pairs(fit_to_length(data["pairs"], self.tokenizer, *budget), seed=self.seed)

    def load_eval_prompts(self) -> list[dict]:
        return load_eval_prompts(self.eval_prompts)[: self.max_eval_prompts]

    def to_dict(self) -> dict:
        """The values a worker process needs to rebuild this session (``Session(**d)``), the resolved model source
        included."""
        self.setup_model()
        return {"model_name": self.model_name, "preset": self.preset, "overrides": self.overrides,
                "seed": self.seed, "eval_prompts": self.eval_prompts, "max_eval_prompts": self.max_eval_prompts,
                "source": dataclasses.asdict(self.source)}
