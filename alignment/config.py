"""One documented, validated config dataclass per method, with the classroom preset as defaults.

The classroom preset starts from the course's table (``task2-smollm2-notebook-README.md``): 30 steps each,
LoRA r=8 / alpha=32, DPO beta, PPO KL coefficient 0.05 and clip 0.2, GRPO group size 4. Where the course's
values barely move a LoRA model in 30 steps, the default differs and the reason is written next to it
(measured on SmolLM2-135M-Instruct, CPU; see README "Choosing the classroom preset").

Every method shares ``CommonConfig``: same base model, LoRA settings, step budget, length budget and seed.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields

METHODS = ("reward", "dpo", "ppo", "grpo")


def _setting(name: str) -> dict:
    """Field metadata: the field is shown in the app's Train tab under the common setting ``name`` (the same
    name across methods where the idea is the same: PPO's ``kl_coef`` and DPO's ``beta`` are both "beta", the
    pull back to the reference model). ``setting_fields`` reads it."""
    return {"setting": name}


def setting_fields(method: str) -> dict[str, str]:
    """``{setting name: config field}`` of the Train tab's settings for ``method``, from the fields' metadata
    (e.g. PPO: ``{"max_steps": "max_steps", ..., "beta": "kl_coef", "clip_range": "cliprange"}``).

    Raises:
        ValueError: unknown method.
    """
    if method not in CONFIG_CLASSES:
        raise ValueError(f"Unknown method {method!r} (expected one of {', '.join(METHODS)})")
    out: dict[str, str] = {}
    for f in fields(CONFIG_CLASSES[method]):
        if "setting" in f.metadata:
            out[f.metadata["setting"]] = f.name
    return out


# The Train tab's settings, in the order it shows them.
SETTING_NAMES = ("learning_rate", "max_steps", "batch_size", "beta", "clip_range", "group_size", "lora_r")


def settings_of(cfg) -> dict:
    """``{setting name: value, or None where the method has no such setting}`` of a resolved config."""
    method = next(m for m, c in CONFIG_CLASSES.items() if type(cfg) is c)
    names = setting_fields(method)
    return {n: getattr(cfg, names[n]) if n in names else None for n in SETTING_NAMES}


def apply_settings(method: str, values: dict, settings: dict) -> dict:
    """``values`` (a config as a dict) with the Train tab's ``settings`` (``{setting name: number or text}``) set
    on the fields they name (``setting_fields``); empty and unused settings are ignored. The result is not yet
    validated as a config (``make_config`` does that).

    Raises:
        ValueError: a setting that is not a number, not finite, or fractional where the field is a count.
    """
    names = setting_fields(method)
    types = typing.get_type_hints(CONFIG_CLASSES[method])
    out = dict(values)
    for name, value in settings.items():
        if value is None or value == "" or name not in names:
            continue
        label = name.replace("_", " ")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{label} must be a number; got {str(value)[:40]!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{label} must be a finite number; got {str(value)[:40]!r}")
        integer = types[names[name]] is int
        if integer and number != int(number):
            raise ValueError(f"{label} must be a whole number; got {value!r}")
        out[names[name]] = int(number) if integer else number
    return out


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _check_types_and_bounds(cfg) -> None:
    """Every field has its declared type (an int field takes no float or bool, a float field a finite real
    number) and lies within the class's ``BOUNDS`` (inclusive; merged along the class hierarchy). Settings come
    from browsers and API clients, so this runs before any other check: ``1e9``, ``inf`` or ``"8"`` never reach
    a trainer."""
    hints = typing.get_type_hints(type(cfg))
    bounds: dict = {}
    for klass in reversed(type(cfg).__mro__):
        bounds.update(getattr(klass, "BOUNDS", {}))
    for f in fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        optional = type(None) in typing.get_args(hint)
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint) if optional else hint
        if value is None:
            _check(optional, f"{f.name} must be set")
            continue
        if base is bool:
            _check(isinstance(value, bool), f"{f.name} must be true or false, got {value!r}")
        elif base is int:
            _check(isinstance(value, int) and not isinstance(value, bool), f"{f.name} must be a whole number, got {value!r}")
        elif base is float:
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                   f"{f.name} must be a finite number, got {value!r}")
        elif base is str:
            _check(isinstance(value, str), f"{f.name} must be a string, got {value!r}")
        if f.name in bounds:
            lo, hi = bounds[f.name]
            _check(lo <= value <= hi, f"{f.name} must be between {lo:g} and {hi:g}, got {value!r}")


@dataclass
class CommonConfig:
    """Settings every method shares (a fair comparison holds these equal).

    Attributes:
        max_steps: optimizer steps (reward model, DPO) or rollout batches (PPO, GRPO) per run.
        learning_rate: AdamW learning rate for the LoRA parameters.
        batch_size: pairs per step (reward model, DPO) or prompts per step (PPO, GRPO).
        lora_r, lora_alpha: LoRA rank and scaling (alpha / r multiplies the update), on q/k/v/o projections.
        max_prompt_length: prompt budget in tokens, chat template included (longer conversations keep their
            most recent turns). 64 fits every built-in prompt and 95% of HH-RLHF pairs (the rest are skipped
            and counted); sequence length drives the cost of every method on a CPU.
        max_completion_length: response budget in tokens (dataset responses are cut, generations stop there).
        seed: seeds data order, LoRA init and sampling.
        logging_steps: write a metrics line every this many steps.
        disable_dropout: dropout off in policy and reference (Huang et al. 2022; the KL estimate is exact).
        bf16: bfloat16 autocast for training forward/backward passes (weights and optimizer stay fp32). On CPUs
            with avx512-bf16 or AMX this is ~1.4x faster per PPO step; tests/test_precision.py bounds the
            difference to the fp32 path. PPO and GRPO also score their training rewards under bf16 autocast
            (about 1.8x faster, within about 0.02 of fp32). A reward run's ``bf16`` also sets how its reward
            models score in the evaluation and Compare (``RewardScorer.bf16``: 2.5x faster there, win rates within
            1.6 points of fp32 scoring); the evaluation's answers and KL are always fp32.
        missing_eos_penalty: subtracted from the reward-model score of a sampled response that hits
            ``max_completion_length`` without EOS (PPO and GRPO; Huang et al. 2022). None disables it.
        response_logits_only: apply the LM head only where a log-prob is needed (response tokens): PPO via
            ``logits_to_keep``; DPO and GRPO by letting TRL's fused LM head score only labelled positions on CPU
            too (it does so only with Triton). Same numbers, about a third of the LM-head work here; False is the
            benchmark's unoptimised baseline.
        film_strip_every: policies (DPO, PPO, GRPO) answer ``film_strip_prompts`` fixed evaluation prompts before
            the first step and every this many steps, scored by the proxy and gold reward models and the rules
            (``alignment.trainers.film_strip``; about 3.5 s a frame here with ``bf16``). 0 turns it off.
        film_strip_prompts: prompts per film-strip frame, spread over the categories.
    """

    # Inclusive bounds of every numeric setting a student can set (browser, API or --set). They keep one job
    # within what this 2-core, 24 GiB server holds and a class period allows: 300 steps of the slowest method
    # (PPO, about 6 s per 8-prompt step here) take about 30 min; a batch of 32 pairs of 64 + 32 tokens, or 64
    # sampled answers per step, stays within a few GiB (see README "Settings and their bounds").
    BOUNDS = {
        "max_steps": (1, 300), "learning_rate": (1e-7, 0.1), "batch_size": (1, 32), "lora_r": (1, 64),
        "lora_alpha": (1, 256), "max_prompt_length": (16, 512), "max_completion_length": (4, 256),
        "seed": (0, 2**31 - 1), "logging_steps": (1, 300), "missing_eos_penalty": (0.0, 10.0),
        "film_strip_every": (0, 300), "film_strip_prompts": (1, 32),
    }

    max_steps: int = field(default=30, metadata=_setting("max_steps"))
    learning_rate: float = field(default=1e-4, metadata=_setting("learning_rate"))
    batch_size: int = field(default=4, metadata=_setting("batch_size"))
    lora_r: int = field(default=8, metadata=_setting("lora_r"))
    lora_alpha: int = 32
    max_prompt_length: int = 64
    max_completion_length: int = 32
    seed: int = 42
    logging_steps: int = 1
    disable_dropout: bool = True
    bf16: bool = True
    missing_eos_penalty: float | None = 1.0
    response_logits_only: bool = True
    film_strip_every: int = 10
    film_strip_prompts: int = 8

    def __post_init__(self) -> None:
        _check_types_and_bounds(self)
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), got {self.learning_rate}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be >= 1")
        _check(self.max_prompt_length >= 16, f"max_prompt_length must be >= 16, got {self.max_prompt_length}")
        _check(self.max_completion_length >= 4, f"max_completion_length must be >= 4, got {self.max_completion_length}")
        _check(self.logging_steps >= 1, "logging_steps must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class RewardModelConfig(CommonConfig):
    """Reward model (Bradley-Terry) trained with TRL ``RewardTrainer``.

    Course value lr=1e-4 with a freshly initialised scalar head reaches ~chance accuracy in 30 steps;
    5e-4 (LoRA + full head) separates the built-in pairs within the budget.

    Attributes:
        center_rewards_coefficient: weight of the auxiliary (r_w + r_l)^2 term that keeps rewards centred
            (Eisenstein et al. 2023); None disables it.
        gold_model: also train a second, "gold" reward model (Gao et al. 2023, "Scaling Laws for Reward Model
            Overoptimization") on the other half of the training pairs with another seed: the training pairs are
            split in two disjoint halves, the proxy reward model (the one PPO and GRPO optimise) learns from one,
            the gold one from the other, and only the evaluation uses the gold one (``gold/`` in the run
            directory). False: one reward model on every training pair.
        reward_flaw: a bias planted in the proxy reward model's training pairs for the reward-hacking exercise
            (``alignment.data.flaws``): ``"none"``, or ``"length"`` (in every pair the longer answer is labelled
            chosen, the length bias Singhal et al. 2023 found in real preference data). The gold reward model
            always learns from clean pairs, and the held-out accuracy is measured on clean pairs.
    """

    BOUNDS = {"center_rewards_coefficient": (0.0, 10.0)}
    FLAWS = ("none", "length")  # alignment.data.flaws.FLAWS

    learning_rate: float = field(default=5e-4, metadata=_setting("learning_rate"))
    batch_size: int = field(default=4, metadata=_setting("batch_size"))
    center_rewards_coefficient: float | None = 0.01
    gold_model: bool = True
    reward_flaw: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.reward_flaw in self.FLAWS,
               f"reward_flaw must be one of {', '.join(self.FLAWS)}, got {self.reward_flaw!r}")


@dataclass
class DPOConfig(CommonConfig):
    """Direct Preference Optimization with TRL ``DPOTrainer``; the reference model is the policy with its
    LoRA adapter disabled.

    Course value lr=5e-6 moved rewards/margins by ~1e-4 in 6 steps; with LoRA the update is scaled by
    alpha/r but starts at zero. The preset uses lr=1e-3 with the course's beta=0.3, measured on the built-in
    data (README, "The methods compared"; 30 steps, 4 answers x 30 prompts): lr 1e-4 / beta 0.1 moved DPO by a
    KL of 0.2 nats and left it at 50% by the rules; lr 1e-3 with beta 0.1 / 0.3 / 1.0 reached KL 18.9 / 10.1 /
    5.5 and rules win rates of 58% / 61% / 59%, gold reward model 62% each, every interval above 50%.

    Attributes:
        beta: strength of the implicit KL constraint (Rafailov et al. 2023, Eq. 7).
        loss_type: ``"sigmoid"`` (DPO) or ``"ipo"`` (Azar et al. 2023).
    """

    BOUNDS = {"beta": (1e-4, 10.0)}

    learning_rate: float = field(default=1e-3, metadata=_setting("learning_rate"))
    batch_size: int = field(default=4, metadata=_setting("batch_size"))
    beta: float = field(default=0.3, metadata=_setting("beta"))
    loss_type: str = "sigmoid"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        _check(self.loss_type in ("sigmoid", "ipo"), f"loss_type must be 'sigmoid' or 'ipo', got {self.loss_type!r}")


@dataclass
class PPOConfig(CommonConfig):
    """PPO-RLHF (our implementation; TRL 1.x has none). See ``alignment.trainers.ppo``.

    Course values: lr 1e-5, batch 1, kl_coef 0.05, clip 0.2. Batch 1 gives no advantage whitening, and on
    SmolLM2-135M lr 1e-4 with 8 prompts per step moved the KL to ~0.6 nats but left the mean score flat in 30
    rollouts (0.48 -> 0.41, first vs last quarter); 3e-4 raised it (-0.74 -> -0.43) with KL up to ~5 nats.
    The preset samples 8 prompts per step (the same number of completions as GRPO's 2 prompts x 4), uses
    lr 2e-4, and keeps the course's clip range and KL coefficient.

    Attributes:
        kl_coef: beta of the per-token KL penalty -beta * (log pi - log pi_ref) in the reward; initial value when
            adaptive.
        kl_controller: ``"fixed"`` or ``"adaptive"`` (Ziegler et al. 2019, Sec. 2.2).
        target_kl, kl_horizon: target KL (nats per sequence) and horizon of the adaptive controller.
        cliprange, cliprange_value: epsilon of the policy surrogate and of the value loss.
        vf_coef: weight of the value loss.
        gamma, lam: discount and GAE lambda (Huang et al. 2022 use 1.0 and 0.95).
        ppo_epochs, num_mini_batches: passes over each rollout batch and minibatches per pass (shuffled).
        temperature: sampling temperature; logprobs use logits / temperature everywhere.
        value_lr_multiplier: the value head learns faster than LoRA (it starts from zero).
        reward_norm_samples: reward normalisation (Ziegler et al. 2019, Sec. 2.2; Huang et al. 2022): before the
            first step, the base policy answers this many training prompts and the reward model's gain and bias
            are set so that its scores of those answers have mean 0 and std 1; PPO then optimises the normalised
            score (the missing-EOS penalty is added after, in those units), so ``kl_coef``, ``cliprange_value``
            and ``target_kl`` mean the same whatever the reward model's scale. Written to
            ``reward_normalization.json``; 0 turns it off (raw scores).
    """

    BOUNDS = {"kl_coef": (0.0, 10.0), "target_kl": (0.01, 100.0), "kl_horizon": (1, 10**6),
              "cliprange_value": (0.01, 10.0), "vf_coef": (0.0, 10.0), "ppo_epochs": (1, 8),
              "num_mini_batches": (1, 32), "temperature": (0.05, 2.0), "value_lr_multiplier": (0.0, 100.0),
              "reward_norm_samples": (0, 256)}

    learning_rate: float = field(default=2e-4, metadata=_setting("learning_rate"))
    batch_size: int = field(default=8, metadata=_setting("batch_size"))
    kl_coef: float = field(default=0.05, metadata=_setting("beta"))
    kl_controller: str = "fixed"
    target_kl: float = 6.0
    kl_horizon: int = 10000
    cliprange: float = field(default=0.2, metadata=_setting("clip_range"))
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    ppo_epochs: int = 2
    num_mini_batches: int = 2
    temperature: float = 0.7
    value_lr_multiplier: float = 10.0
    reward_norm_samples: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.reward_norm_samples != 1, "reward_norm_samples must be 0 (off) or at least 2 (a std needs two)")
        _check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")
        _check(self.kl_controller in ("fixed", "adaptive"), f"kl_controller must be 'fixed' or 'adaptive', got {self.kl_controller!r}")
        _check(0 < self.cliprange < 1 and 0 < self.cliprange_value, "cliprange must be in (0, 1) and cliprange_value > 0")
        _check(0 <= self.gamma <= 1 and 0 <= self.lam <= 1, "gamma and lam must be in [0, 1]")
        _check(self.ppo_epochs >= 1 and self.num_mini_batches >= 1, "ppo_epochs and num_mini_batches must be >= 1")
        _check(self.batch_size % self.num_mini_batches == 0,
               f"batch_size ({self.batch_size}) must be divisible by num_mini_batches ({self.num_mini_batches})")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


@dataclass
class GRPOConfig(CommonConfig):
    """Group Relative Policy Optimization with TRL ``GRPOTrainer``, rewarded by our trained reward model.

    Course values: lr 1e-5, batch 1, group size 4, no KL. The preset keeps group size 4 and takes 2 prompts
    per step (8 completions, as PPO). With one gradient step per generation batch, lr 1e-4 left the policy
    almost unchanged in 30 steps (training KL 0.002 nats/token, reward flat), so the preset uses 5e-4; beta
    0.04 (DeepSeekMath's value) keeps the KL to the reference visible in the metrics.

    Attributes:
        num_generations: group size G, responses sampled per prompt.
        beta: KL coefficient (k3 estimator); > 0 so the KL to the reference is measured and logged.
        epsilon: clip range of the ratio.
        loss_type: ``"grpo"`` or ``"dr_grpo"`` (see ``alignment.losses.grpo_loss``).
        scale_rewards: divide group-centred rewards by the group std (True) or not. None (the default): True for
            ``"grpo"``, False for ``"dr_grpo"``: Dr. GRPO drops both the std scaling and the length normaliser
            (Liu et al. 2025, "Understanding R1-Zero-Like Training", Sec. 3.1), so ``dr_grpo`` with
            ``scale_rewards=True`` is refused as half of Dr. GRPO.
        temperature: sampling temperature.
    """

    # batch_size x num_generations answers are sampled and scored per step: at most 64 (MAX_COMPLETIONS_PER_STEP)
    BOUNDS = {"batch_size": (1, 16), "num_generations": (2, 16), "beta": (0.0, 10.0), "temperature": (0.05, 2.0)}
    MAX_COMPLETIONS_PER_STEP = 64

    learning_rate: float = field(default=5e-4, metadata=_setting("learning_rate"))
    batch_size: int = field(default=2, metadata=_setting("batch_size"))
    num_generations: int = field(default=4, metadata=_setting("group_size"))
    beta: float = field(default=0.04, metadata=_setting("beta"))
    epsilon: float = field(default=0.2, metadata=_setting("clip_range"))
    loss_type: str = "grpo"
    scale_rewards: bool | None = None
    temperature: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.num_generations >= 2, f"num_generations (group size) must be >= 2, got {self.num_generations}")
        _check(self.batch_size * self.num_generations <= self.MAX_COMPLETIONS_PER_STEP,
               f"batch_size x num_generations (answers sampled per step) must be at most "
               f"{self.MAX_COMPLETIONS_PER_STEP}, got {self.batch_size} x {self.num_generations}")
        _check(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        _check(0 < self.epsilon < 1, f"epsilon must be in (0, 1), got {self.epsilon}")
        _check(self.loss_type in ("grpo", "dr_grpo"), f"loss_type must be 'grpo' or 'dr_grpo', got {self.loss_type!r}")
        if self.scale_rewards is None:
            self.scale_rewards = self.loss_type == "grpo"
        _check(not (self.loss_type == "dr_grpo" and self.scale_rewards),
               "loss_type='dr_grpo' drops the group-std scaling of the advantages (Liu et al. 2025, Sec. 3.1): "
               "leave scale_rewards unset or False")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


CONFIG_CLASSES = {"reward": RewardModelConfig, "dpo": DPOConfig, "ppo": PPOConfig, "grpo": GRPOConfig}


def make_config(method: str, preset: str = "classroom", **overrides):
    """Config for ``method`` under ``preset`` (``"classroom"``: 30 steps; ``"quick"``: a first look in a couple
    of minutes), with ``overrides`` applied and validated.

    Raises:
        ValueError: unknown method, preset or field, or an invalid value.
    """
    if method not in CONFIG_CLASSES:
        raise ValueError(f"Unknown method {method!r} (expected one of {', '.join(METHODS)})")
    cls = CONFIG_CLASSES[method]
    values: dict = {}
    if preset == "quick":
        values.update(max_steps=4, max_completion_length=24)
    elif preset != "classroom":
        raise ValueError(f"Unknown preset {preset!r} (expected 'classroom' or 'quick')")
    names = {f.name for f in fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"Unknown {method} setting(s): {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


__all__ = ["CONFIG_CLASSES", "CommonConfig", "DPOConfig", "GRPOConfig", "METHODS", "PPOConfig",
           "RewardModelConfig", "SETTING_NAMES", "apply_settings", "make_config", "setting_fields", "settings_of"]
