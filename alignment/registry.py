"""One registry of the alignment methods: config class, train function, whether it needs a reward model.

The pipeline (``alignment.pipeline.train_run``), the job queue's workers and ``benchmarks/bench.py`` all dispatch
through ``REGISTRY``; adding a method means one ``MethodSpec`` here, a config class in ``alignment.config`` and a
trainer in ``alignment.trainers``. The train functions import the trainers (torch, TRL) only when called, so the
registry is cheap to import (the app's Train tab reads labels and settings from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .config import CONFIG_CLASSES, METHODS


@dataclass(frozen=True)
class TrainInputs:
    """What a trainer reads: the model source and tokenizer, the fitted training and held-out pairs, the trained
    reward model's scorer (``alignment.generation.RewardScorer``; None when no reward run exists, required by PPO
    and GRPO), the gold reward model's scorer (None without one) and the evaluation prompts (the film strip's)."""

    source: object
    tokenizer: object
    train: list
    heldout: list
    reward_scorer: object = None
    gold_scorer: object = None
    eval_prompts: list = ()


@dataclass(frozen=True)
class MethodSpec:
    """One alignment method.

    Attributes:
        name: ``"reward"``, ``"dpo"``, ``"ppo"``, ``"grpo"``.
        label: how the app names it.
        config_class: its config dataclass (``alignment.config``).
        train: ``train(cfg, inputs: TrainInputs, ctx: RunContext) -> (policy or None, extra run_info dict)``.
        needs_reward_model: PPO and GRPO optimise a trained reward model's score.
        is_policy: it trains a policy adapter (answers in Compare and the evaluation); the reward model does not.
    """

    name: str
    label: str
    config_class: type
    train: Callable
    needs_reward_model: bool
    is_policy: bool


def split_for_gold(rows: list, seed: int) -> tuple[list, list]:
    """Two disjoint halves of the training pairs (a seeded shuffle, then alternating): the proxy reward model's
    and the gold reward model's (``RewardModelConfig.gold_model``). Every pair is in exactly one half."""
    import random

    order = list(range(len(rows)))
    random.Random(f"gold-{seed}").shuffle(order)
    return [rows[i] for i in order[0::2]], [rows[i] for i in order[1::2]]


def _reward(cfg, inputs: TrainInputs, ctx):
    import dataclasses

    from .data.flaws import plant_flaw
    from .trainers import train_reward_model
    from .trainers.common import RunContext

    proxy_rows, gold_rows = split_for_gold(inputs.train, cfg.seed) if cfg.gold_model else (inputs.train, None)
    proxy_rows, relabelled = plant_flaw(proxy_rows, cfg.reward_flaw)  # the gold model's half stays clean
    _, extra = train_reward_model(cfg, inputs.source, inputs.tokenizer, proxy_rows, inputs.heldout, ctx)
    extra["train_pairs"] = len(proxy_rows)
    if cfg.reward_flaw != "none":
        extra["reward_flaw"] = {"flaw": cfg.reward_flaw, "relabelled_pairs": relabelled, "train_pairs": len(proxy_rows),
                                "note": "planted in the proxy reward model's training pairs only; the gold reward "
                                        "model and the held-out accuracy use clean pairs"}
    if gold_rows is None or ctx.should_stop():
        return None, extra
    ctx.phase("training the gold reward model")  # Gao et al. 2023: a second judge nobody was trained on
    gold_ctx = RunContext(ctx.run_dir / "gold", "reward", cfg.max_steps, parent=ctx)
    _, gold = train_reward_model(dataclasses.replace(cfg, seed=cfg.seed + 1), inputs.source, inputs.tokenizer,
                                 gold_rows, inputs.heldout, gold_ctx)
    gold_ctx.finish(**gold, train_pairs=len(gold_rows))
    extra["gold"] = {"adapter": gold["adapter"], "heldout": gold["heldout"], "train_pairs": len(gold_rows),
                     "seed": cfg.seed + 1}
    return None, extra


def film_strip(cfg, inputs: TrainInputs, ctx):
    """The run's ``FilmStrip`` (``alignment.trainers.film_strip``): ``cfg.film_strip_prompts`` evaluation prompts
    every ``cfg.film_strip_every`` steps at the run's temperature and length, watched by the proxy and gold reward
    models of ``inputs``."""
    from .trainers.film_strip import FilmStrip, Referees, pick_prompts

    return FilmStrip(ctx.run_dir, inputs.tokenizer, pick_prompts(list(inputs.eval_prompts), cfg.film_strip_prompts),
                     Referees(inputs.reward_scorer, inputs.gold_scorer), every=cfg.film_strip_every,
                     max_new_tokens=cfg.max_completion_length, temperature=getattr(cfg, "temperature", 0.7),
                     seed=cfg.seed, bf16=cfg.bf16)


def _dpo(cfg, inputs: TrainInputs, ctx):
    from .trainers import train_dpo

    return train_dpo(cfg, inputs.source, inputs.tokenizer, inputs.train, ctx,
                     film_strip=film_strip(cfg, inputs, ctx)), {}


def _ppo(cfg, inputs: TrainInputs, ctx):
    from .trainers import train_ppo

    return train_ppo(cfg, inputs.source, inputs.tokenizer, inputs.train, inputs.reward_scorer, ctx,
                     gold_scorer=inputs.gold_scorer, film_strip=film_strip(cfg, inputs, ctx)), {}


def _grpo(cfg, inputs: TrainInputs, ctx):
    from .trainers import train_grpo

    return train_grpo(cfg, inputs.source, inputs.tokenizer, inputs.train, inputs.reward_scorer, ctx,
                      gold_scorer=inputs.gold_scorer, film_strip=film_strip(cfg, inputs, ctx)), {}


REGISTRY: dict[str, MethodSpec] = {
    "reward": MethodSpec("reward", "Reward model", CONFIG_CLASSES["reward"], _reward, False, False),
    "dpo": MethodSpec("dpo", "DPO", CONFIG_CLASSES["dpo"], _dpo, False, True),
    "ppo": MethodSpec("ppo", "PPO", CONFIG_CLASSES["ppo"], _ppo, True, True),
    "grpo": MethodSpec("grpo", "GRPO", CONFIG_CLASSES["grpo"], _grpo, True, True),
}
assert tuple(REGISTRY) == METHODS
POLICY_METHODS = tuple(m for m, spec in REGISTRY.items() if spec.is_policy)


def sweep_name(method: str, field: str, value) -> str:
    """The model name of one run of a sweep (``class7_1.py --sweep dpo.beta=0.05,0.1,0.3``): ``"dpo(beta=0.05)"``."""
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{method}({field}={shown})"


def method_of(model_name: str) -> str:
    """The method of an evaluated model's name: ``"dpo"`` for ``"dpo"`` and for the sweep run ``"dpo(beta=0.05)"``
    (``sweep_name``); ``"base"`` for base."""
    return model_name.split("(", 1)[0]


def method_spec(method: str) -> MethodSpec:
    """The ``MethodSpec`` of ``method``. Raises ValueError for an unknown name (the message lists the known ones)."""
    if method not in REGISTRY:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[method]
