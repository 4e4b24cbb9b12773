"""Watching over-optimisation while a policy trains: per-step proxy and gold scores, and the "film strip".

Gao et al. 2023 ("Scaling Laws for Reward Model Overoptimization") train a policy against a *proxy* reward model
and watch a *gold* one that nobody trained on: as KL to the start grows, the proxy score keeps climbing while the
gold score rises, peaks and falls. Two probes make that visible in every run:

- ``Referees``: the reward models a run is watched by. PPO and GRPO score every rollout with the proxy (their
  training reward) and the gold reward model, logged per step as ``objective/raw_scores`` and ``gold/scores``
  (raw reward-model units, no missing-EOS penalty), next to the KL.
- ``FilmStrip``: every ``every`` optimizer steps (and before the first), the policy answers the same ``size``
  evaluation prompts with the same random numbers (common random numbers: frames differ by the policy only).
  Each answer is scored by the proxy and the gold reward model and the rules (``alignment.rules``), with its
  length and its KL to the reference (the policy with its adapter disabled): log pi(y|x) - log pi_ref(y|x) of the
  sampled answer, both at the sampling temperature, whose mean over samples estimates KL(pi_T || pi_ref,T) in
  nats. Frames go to ``film_strip.jsonl`` in the run directory, one JSON object per line::

      {"step": 10, "elapsed_s": 41.2, "answers": [{"prompt", "category", "response", "length_tokens",
       "ended_with_eos", "proxy", "gold", "rules", "kl"}, ...], "mean": {"proxy", "gold", "rules", "kl", "length"}}

  DPO, which trains without a reward model, gets the same frames when a reward run exists (the class's, or the
  student's own), so all three methods are drawn on one chart (``alignment.report.overoptimization_figure``).

A frame costs one batched generation of ``size`` answers (``generate_shared_noise``: Gumbel noise fixed per prompt),
two forward passes for the KL (the policy's and the reference's, through the same code, so the KL of a policy that
has not moved is exactly 0 rather than float noise) and one per reward model.
The global torch RNG is saved and restored around it, so a run with a film strip trains exactly as one without.

With ``bf16`` (the runs' default, as their ``bf16`` setting) a frame samples from a bf16 copy of the policy with its
adapter merged (``MergedRolloutModel``, the copy PPO and GRPO sample their rollouts from) and the reward models
score under bf16 autocast, as the trainers score their rollouts; the KL's two forward passes stay fp32 (in bf16 the
per-answer KL moves by up to 1 nat). Every method's frames go through the same path, so frame 0 (the untrained
policy) is the same for all three. Measured on the classroom preset's PPO policy (8 prompts x 32 tokens, 2-core
AVX-512-bf16 CPU, ``benchmarks/film_strip_time.py``): 3.55 s a frame against 6.06 s in fp32 (sampling 0.99 s
against 2.73 s, the two reward models 0.54 s against 1.47 s, the KL's fp32 forwards 1.8 s either way); 5 of the
8 answers were the same in both precisions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

FILM_STRIP_FILE = "film_strip.jsonl"


@dataclass
class Referees:
    """The reward models a run is watched by (``alignment.generation.RewardScorer`` or None each).

    ``proxy``: the one PPO and GRPO optimise (the reward run's adapter); ``gold``: the reward run's gold model
    (``RewardModelConfig.gold_model``), trained on the other half of the pairs with another seed.
    """

    proxy: object = None
    gold: object = None


def pick_prompts(eval_prompts: list[dict], size: int = 8) -> list[dict]:
    """``size`` evaluation prompts spread over the categories (round robin in the file's order), so a frame shows
    each kind of question. Deterministic: every run of a class watches the same prompts."""
    by_cat: dict[str, list[dict]] = {}
    for row in eval_prompts:
        by_cat.setdefault(row.get("category") or "other", []).append(row)
    picked, i = [], 0
    while len(picked) < min(size, len(eval_prompts)):
        for rows in by_cat.values():
            if i < len(rows) and len(picked) < size:
                picked.append(rows[i])
        i += 1
    return picked


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


class FilmStrip:
    """Frames of one run's answers to fixed prompts, every ``every`` steps (see the module docstring).

    Args:
        run_dir: the run directory; frames are appended to ``run_dir / "film_strip.jsonl"`` (replaced at start).
        tokenizer: the shared tokenizer (not modified).
        prompts: evaluation prompt rows (``{"prompt", "category", "rule"?}``), e.g. ``pick_prompts(...)``.
        referees: proxy and gold reward models (either may be None: that score is then null).
        every: steps between frames (0: no frames at all).
        max_new_tokens, temperature: the run's own generation budget and sampling temperature.
        seed: the frames' fixed seed (common random numbers across frames).
        bf16: sample from a bf16 merged copy of the policy and score under bf16 autocast (module docstring);
            False: everything in the policy's own precision.
    """

    def __init__(self, run_dir: Path, tokenizer, prompts: list[dict], referees: Referees | None = None,
                 every: int = 10, max_new_tokens: int = 32, temperature: float = 0.7, seed: int = 0,
                 bf16: bool = False):
        self.path = Path(run_dir) / FILM_STRIP_FILE
        self.tokenizer, self.prompts = tokenizer, list(prompts)
        self.referees = referees or Referees()
        self.every, self.max_new_tokens, self.temperature, self.seed = every, max_new_tokens, temperature, seed
        self.bf16 = bf16
        self._rollout = None  # the bf16 merged copy this strip made (runs without their own rollout copy: DPO)
        self.start = time.time()
        self.captured: set[int] = set()
        if self.enabled:
            self.path.write_text("")

    @property
    def enabled(self) -> bool:
        return self.every > 0 and bool(self.prompts)

    def wants(self, step: int, final: bool = False) -> bool:
        """Whether step ``step`` (0 = before training) gets a frame: every ``every`` steps and the ``final`` one,
        once each."""
        return self.enabled and step not in self.captured and (final or step % self.every == 0)

    def maybe_capture(self, step: int, policy, final: bool = False, rollout=None) -> dict | None:
        """``capture`` when the step ``wants`` a frame, else None."""
        return self.capture(step, policy, rollout) if self.wants(step, final) else None

    def _sampler(self, policy, rollout=None):
        """The model a frame samples from: with ``bf16``, ``rollout`` (the run's own ``MergedRolloutModel`` of
        ``policy``) or a copy this strip makes once, synced to the current adapter; else ``policy`` itself."""
        if not self.bf16 or not hasattr(policy, "get_base_model"):
            return policy
        if rollout is None:
            from ..generation import MergedRolloutModel

            if self._rollout is None or self._rollout.policy is not policy:
                self._rollout = MergedRolloutModel(policy)
            rollout = self._rollout
        rollout.sync()
        return rollout.model

    @torch.no_grad()
    def capture(self, step: int, policy, rollout=None) -> dict:
        """Sample, score and append one frame for ``policy`` (a ``PeftModel``; eval mode during the frame, its
        training mode and the torch RNG restored after). ``rollout``: the run's ``MergedRolloutModel`` of
        ``policy`` to sample from with ``bf16`` (None: the strip makes its own). Returns the frame."""
        from ..generation import generate_shared_noise, sequence_log_ratio
        from ..rules import score_answer

        rng, was_training = torch.get_rng_state(), policy.training
        policy.eval()
        try:
            prompts = [row["prompt"] for row in self.prompts]
            gens = generate_shared_noise(self._sampler(policy, rollout), self.tokenizer, prompts, None,
                                         list(range(len(prompts))), self.max_new_tokens, self.temperature, True,
                                         self.seed, len(prompts))
            texts = [g.text for g in gens]
            kl = (sequence_log_ratio(policy, self.tokenizer, prompts, [g.token_ids for g in gens], self.temperature,
                                     batch_size=len(prompts))  # two fp32 forwards: 0 exactly for an unmoved policy
                  if hasattr(policy, "disable_adapter") else [0.0] * len(prompts))
            scores = {name: (scorer.score(prompts, texts, bf16=self.bf16).tolist() if scorer is not None
                             else [None] * len(prompts))
                      for name, scorer in (("proxy", self.referees.proxy), ("gold", self.referees.gold))}
        finally:
            policy.train(was_training)
            torch.set_rng_state(rng)
        answers = [{"prompt": row["prompt"], "category": row.get("category"), "response": g.text,
                    "length_tokens": g.length, "ended_with_eos": g.ended_with_eos, "proxy": scores["proxy"][i],
                    "gold": scores["gold"][i], "rules": score_answer(row, g.text), "kl": kl[i]}
                   for i, (row, g) in enumerate(zip(self.prompts, gens))]
        frame = {"step": int(step), "elapsed_s": round(time.time() - self.start, 3), "answers": answers,
                 "mean": {k: _mean(a[k] for a in answers) for k in ("proxy", "gold", "rules", "kl", "length_tokens")}}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(frame, ensure_ascii=False, allow_nan=False) + "\n")
        self.captured.add(int(step))
        return frame


def read_film_strip(run_dir: str | Path) -> list[dict]:
    """The frames of a run's ``film_strip.jsonl`` in step order (``[]`` when it has none; a partly written last
    line is skipped)."""
    path = Path(run_dir) / FILM_STRIP_FILE
    frames = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                frames.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return sorted(frames, key=lambda f: f.get("step", 0))


def frame_means(frames: list[dict]) -> list[dict]:
    """Each frame's means, in step order: ``[{"step", "kl", "proxy", "gold", "rules", "length_tokens"}, ...]`` (a
    score is None where no such referee watched): the points of the over-optimisation curve."""
    keys = ("kl", "proxy", "gold", "rules", "length_tokens")
    return [{"step": f["step"], **{k: (f.get("mean") or {}).get(k) for k in keys}} for f in frames]


def film_strip_callback(strip: FilmStrip, trainer, ctx, rollout=None):
    """A transformers ``TrainerCallback`` taking ``strip``'s frames of ``trainer``'s model: before the first step,
    every ``strip.every`` steps, and at the last step. A run stopped by its owner (``ctx.should_stop()``) gets no
    further frame: Stop should end it now. The frame runs the model class's own ``forward`` and ``generate``, not
    the instance's wrappers (TRL's accelerate wraps ``forward`` in bf16 autocast when ``bf16`` is on; GRPO's
    ``generate`` names progress phases), so every method's frames go through the same path (their KL in fp32).
    ``rollout``: the run's ``MergedRolloutModel`` for the frames to sample from (``FilmStrip.capture``)."""
    from transformers import TrainerCallback

    def model():
        return trainer.accelerator.unwrap_model(trainer.model)

    def shoot(step: int, final: bool = False):
        if ctx.should_stop() or not strip.wants(step, final):
            return
        ctx.phase("film strip")
        policy = model()
        # the instance's own wrappers, put back after the frame: GRPO's phase-naming ``generate``
        # (alignment.trainers.grpo), and accelerate's bf16 autocast around ``forward`` (``Accelerator.prepare_model``
        # with mixed precision), so that the KL forwards of DPO's and GRPO's frames run in fp32 like PPO's
        patched = {name: policy.__dict__.pop(name) for name in ("generate", "forward") if name in policy.__dict__}
        try:
            strip.capture(step, policy, rollout)
        finally:
            policy.__dict__.update(patched)

    class _FilmStripCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            shoot(0)

        def on_step_end(self, args, state, control, **kwargs):
            shoot(state.global_step, final=state.global_step >= state.max_steps)

        def on_train_end(self, args, state, control, **kwargs):
            shoot(state.global_step, final=True)

    return _FilmStripCallback()
