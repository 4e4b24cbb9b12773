"""The teaching text: one source for the app's Learn tab, the notebook and the README.

Each ``Lesson`` pairs an objective (LaTeX, with its paper and equation number) with the project's own functions
that compute it:

- ``lesson_code`` shows those functions' whole source (the notebook);
- ``lesson_excerpt_code`` shows only the lines that compute the formula (the Learn tab): ``Excerpt``s, consecutive
  lines of a function body in ``alignment/losses.py``, checked verbatim against the source by
  ``tests/test_report_view.py`` (and ``check_excerpts``) so that they cannot drift from the code that runs;
- ``worked_example`` calls the real loss function on a tiny input and returns the number it computes (nothing
  hard-coded: change the function and the number changes).

Version details (what TRL version does what) are kept in ``Lesson.version_notes`` for maintainers and shown to
no student.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import losses


@dataclass(frozen=True)
class Excerpt:
    """Consecutive lines of the body of ``function`` (an ``alignment.losses`` function), written as they are there
    with the body's indentation removed. ``check_excerpts`` verifies them against the source."""

    function: Callable
    lines: str


@dataclass
class Lesson:
    key: str
    title: str
    summary: str
    formula: str  # LaTeX, display math without delimiters
    source: str
    functions: list = field(default_factory=list)
    notes: str = ""  # for students: what the Train tab charts for this method
    excerpts: list = field(default_factory=list)  # Excerpt: the lines that compute the formula
    worked: Callable[[], dict] | None = None  # -> {"inputs", "values", "text"} (see worked_example)
    version_notes: str = ""  # implementation/version details for maintainers; not shown in the app or notebook


# ----------------------------------------------------------------------------- worked numbers
# Each calls the project's loss function on a tiny input (1-4 numbers) and words the result. Values are floats
# from the function itself; the text only formats them.


def _worked_reward() -> dict:
    r_w, r_l = 1.2, 0.3
    right = float(losses.bradley_terry_loss(torch.tensor([r_w]), torch.tensor([r_l]))[0])
    wrong = float(losses.bradley_terry_loss(torch.tensor([r_l]), torch.tensor([r_w]))[0])
    shifted = float(losses.bradley_terry_loss(torch.tensor([r_w + 5.0]), torch.tensor([r_l + 5.0]))[0])
    text = (f"The reward model scores the chosen answer $r_\\phi(x, y_w) = {r_w}$ and the rejected one "
            f"$r_\\phi(x, y_l) = {r_l}$. `bradley_terry_loss` gives $-\\log \\sigma({r_w - r_l:.1f}) = {right:.3f}$ nats. "
            f"Scored the wrong way round it would be $-\\log \\sigma({r_l - r_w:.1f}) = {wrong:.3f}$; adding 5 to both "
            f"scores leaves it at {shifted:.3f}: only the difference counts.")
    return {"inputs": {"chosen_rewards": [r_w], "rejected_rewards": [r_l]},
            "values": {"loss": right, "loss_swapped": wrong, "loss_shifted": shifted}, "text": text}


def _worked_dpo() -> dict:
    beta = 0.1
    pol_w, pol_l, ref_w, ref_l = -12.0, -15.0, -12.5, -14.0  # summed log-probs of each answer, nats
    loss, r_w, r_l = losses.dpo_loss(torch.tensor([pol_w]), torch.tensor([pol_l]), torch.tensor([ref_w]),
                                     torch.tensor([ref_l]), beta=beta)
    loss, r_w, r_l = float(loss[0]), float(r_w[0]), float(r_l[0])
    h = (pol_w - ref_w) - (pol_l - ref_l)
    text = (f"$\\beta = {beta}$. Training raised the chosen answer's log-probability from {ref_w} (reference) to "
            f"{pol_w} nats and lowered the rejected one's from {ref_l} to {pol_l}. The implicit rewards are "
            f"$\\beta \\log \\frac{{\\pi_\\theta}}{{\\pi_{{ref}}}} = {r_w:.3f}$ (chosen) and ${r_l:.3f}$ (rejected), "
            f"and `dpo_loss` gives $-\\log \\sigma({beta} \\times {h:.1f}) = {loss:.3f}$ nats, below "
            f"$\\log 2 = {math.log(2):.3f}$, the loss while the policy still equals the reference.")
    return {"inputs": {"policy_chosen_logps": [pol_w], "policy_rejected_logps": [pol_l], "ref_chosen_logps": [ref_w],
                       "ref_rejected_logps": [ref_l], "beta": beta},
            "values": {"loss": loss, "chosen_reward": r_w, "rejected_reward": r_l}, "text": text}


def _worked_ppo() -> dict:
    advantage, eps, old = 2.0, 0.2, -1.0
    new = old + math.log(1.5)  # this update made the token 1.5 times as likely
    loss, stats = losses.ppo_policy_loss(torch.tensor([[new]]), torch.tensor([[old]]), torch.tensor([[advantage]]),
                                         torch.ones(1, 1), clip_range=eps)
    loss, ratio, clipfrac = float(loss), float(stats["ratio"]), float(stats["clipfrac"])
    text = (f"One token with advantage $\\hat{{A}}_t = {advantage}$ that the update made {ratio:.2f} times as likely "
            f"($\\rho_t = {ratio:.2f}$), clip range $\\epsilon = {eps}$: unclipped $\\rho_t \\hat{{A}}_t = "
            f"{ratio * advantage:.2f}$, clipped $(1 + \\epsilon)\\,\\hat{{A}}_t = {(1 + eps) * advantage:.2f}$. "
            f"The objective takes the smaller, and `ppo_policy_loss` returns its negative: ${loss:.2f}$ (clipped fraction "
            f"{clipfrac:.0%}). The clip gives no gradient for making this token more likely still.")
    return {"inputs": {"logprobs": [[new]], "old_logprobs": [[old]], "advantages": [[advantage]], "clip_range": eps},
            "values": {"loss": loss, "ratio": ratio, "clipfrac": clipfrac}, "text": text}


def _worked_grpo() -> dict:
    rewards = [1.0, 0.0, 0.5, 0.5]
    adv = losses.grpo_advantages(torch.tensor(rewards), group_size=len(rewards)).tolist()
    std = float(torch.tensor(rewards).std())
    text = (f"One prompt, a group of $G = {len(rewards)}$ answers with rewards "
            f"{', '.join(f'{r:g}' for r in rewards)} (mean {sum(rewards) / len(rewards):g}, std {std:.3f}). "
            f"`grpo_advantages` gives {', '.join(f'{a:+.3f}' for a in adv)}: the best answer's tokens are pushed up, "
            f"the worst one's down, and the two average answers get no push at all. A group whose answers all score "
            f"the same gives every answer advantage 0: nothing to learn from that prompt.")
    return {"inputs": {"rewards": rewards, "group_size": len(rewards)}, "values": {"advantages": adv}, "text": text}


LESSONS = [
    Lesson(
        "reward", "Reward model (Bradley-Terry)",
        "A reward model reads a prompt and a response and outputs one number. It is trained on pairs where people "
        "preferred one response (chosen, $y_w$) over another (rejected, $y_l$): the loss pushes the chosen score above "
        "the rejected one. Only the *difference* of scores matters, so rewards have no absolute zero.",
        r"\mathcal{L}_{RM}(\phi) = -\,\mathbb{E}_{(x, y_w, y_l)}\left[\log \sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big)\right]",
        "Bradley & Terry (1952); Ouyang et al. 2022 (InstructGPT), Eq. 1",
        [losses.bradley_terry_loss],
        "The Train tab charts `loss`, `accuracy` (fraction of pairs whose chosen answer scores higher) and `margin` "
        "(mean $r_w - r_l$).",
        excerpts=[Excerpt(losses.bradley_terry_loss, """\
diff = chosen_rewards - rejected_rewards
if margin is not None:
    diff = diff - margin
return -F.logsigmoid(diff)""")],
        worked=_worked_reward,
        version_notes="TRL's `RewardTrainer` minimises this loss; `center_rewards_coefficient` adds "
                      "$\\eta\\,(r_w + r_l)^2$ to keep scores near 0.",
    ),
    Lesson(
        "dpo", "DPO: Direct Preference Optimization",
        "DPO skips the reward model and the sampling loop. The policy's own log-probability ratio against a frozen "
        "reference model acts as an implicit reward $\\beta \\log \\frac{\\pi_\\theta(y|x)}{\\pi_{ref}(y|x)}$, and the "
        "Bradley-Terry loss is applied to it directly on the preference pairs. $\\beta$ sets how far the policy may move "
        "from the reference. IPO replaces the log-sigmoid by a squared loss that stays bounded when pairs are "
        "deterministic.",
        r"\mathcal{L}_{DPO}(\theta) = -\,\mathbb{E}\left[\log \sigma\Big(\beta \log \frac{\pi_\theta(y_w|x)}{\pi_{ref}(y_w|x)}"
        r" - \beta \log \frac{\pi_\theta(y_l|x)}{\pi_{ref}(y_l|x)}\Big)\right]",
        "Rafailov et al. 2023, Eq. 7 (implicit reward Eq. 5); IPO: Azar et al. 2023, Eq. 17",
        [losses.sequence_logps, losses.dpo_loss],
        "The Train tab charts the implicit rewards `rewards/chosen` and `rewards/rejected`, `rewards/margins` (their "
        "difference) and `rewards/accuracies` (fraction of pairs with a positive margin).",
        excerpts=[Excerpt(losses.dpo_loss, """\
chosen_logratios = policy_chosen_logps - ref_chosen_logps
rejected_logratios = policy_rejected_logps - ref_rejected_logps
h = chosen_logratios - rejected_logratios
if loss_type == "sigmoid":
    losses = -F.logsigmoid(beta * h)
elif loss_type == "ipo":
    losses = (h - 1 / (2 * beta)) ** 2""")],
        worked=_worked_dpo,
        version_notes="TRL's `DPOTrainer` logs `rewards/chosen`, `rewards/rejected`, `rewards/margins` and "
                      "`rewards/accuracies` under these names; IPO is its `loss_type='ipo'`, fed length-averaged "
                      "log-probs.",
    ),
    Lesson(
        "ppo", "PPO: Proximal Policy Optimization (RLHF)",
        "PPO samples answers from the policy, scores them with the reward model, and subtracts a per-token KL penalty "
        "to the reference model. A value head predicts future reward; GAE turns rewards and values into advantages. "
        "The clipped surrogate stops one batch from moving the policy too far ($\\epsilon$ = clip range). Four models "
        "are involved: policy, reference, reward model and value head.",
        r"\mathcal{L}^{CLIP}(\theta) = -\,\hat{\mathbb{E}}_t\left[\min\big(\rho_t \hat{A}_t,\ "
        r"\operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,\hat{A}_t\big)\right],\quad "
        r"\rho_t = \frac{\pi_\theta(a_t|s_t)}{\pi_{\theta_{old}}(a_t|s_t)} \\[4pt]"
        r"\hat{A}_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l},\quad \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t),\quad "
        r"r_t = -\beta_{KL} \log\frac{\pi_{\theta_{old}}(a_t|s_t)}{\pi_{ref}(a_t|s_t)} + [t = T]\, r_\phi(x, y)",
        "Schulman et al. 2017, Eq. 7; GAE: Schulman et al. 2016, Eq. 16; KL-shaped reward: Ziegler et al. 2019, Eq. 2",
        [losses.kl_penalty_rewards, losses.gae, losses.ppo_policy_loss, losses.ppo_value_loss],
        "The Train tab charts `objective/scores` (reward-model score of the sampled answers), `objective/kl` (KL to "
        "the reference, nats), `policy/clipfrac_avg` (fraction of tokens where the clip was active), "
        "`val/clipfrac_avg` and `policy/approxkl_avg` (how far one update moved the policy).",
        excerpts=[Excerpt(losses.kl_penalty_rewards, """\
B, T = logprobs.shape
mask = (torch.arange(T, device=logprobs.device)[None, :] < lengths[:, None]).to(logprobs.dtype)
non_score = -kl_coef * (logprobs - ref_logprobs) * mask
rewards = non_score.clone()
rewards[torch.arange(B, device=logprobs.device), (lengths - 1).clamp(min=0)] += scores"""),
                  Excerpt(losses.gae, """\
for t in reversed(range(T)):
    next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
    delta = rewards[:, t] + gamma * next_value - values[:, t]
    last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0.0)
    advantages[:, t] = last * mask[:, t]"""),
                  Excerpt(losses.ppo_policy_loss, """\
log_ratio = (logprobs - old_logprobs) * mask
ratio = torch.exp(log_ratio)
unclipped = -advantages * ratio
clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
loss = masked_mean(torch.max(unclipped, clipped), mask)""")],
        worked=_worked_ppo,
        version_notes="Our PPO (TRL 1.x removed its PPOTrainer) logs TRL's names: `objective/scores`, "
                      "`objective/kl`, `policy/clipfrac_avg`, `val/clipfrac_avg`, `policy/approxkl_avg`.",
    ),
    Lesson(
        "grpo", "GRPO: Group Relative Policy Optimization",
        "GRPO drops the value model. For each prompt it samples a group of $G$ answers, scores them with the reward "
        "model, and uses each answer's reward standardised within its group as the advantage of every token of that "
        "answer. The loss is PPO's clipped surrogate plus a KL penalty to the reference, estimated per token with the "
        "k3 estimator. It is *not* a ranking model: it uses reward values, normalised per group.",
        r"\hat{A}_{i} = \frac{r_i - \operatorname{mean}(r_1..r_G)}{\operatorname{std}(r_1..r_G)} \\[4pt]"
        r"\mathcal{L}_{GRPO}(\theta) = -\frac{1}{G}\sum_{i=1}^{G} \frac{1}{|o_i|}\sum_{t=1}^{|o_i|}\Big[\min\big(\rho_{i,t}\hat{A}_{i},\ "
        r"\operatorname{clip}(\rho_{i,t}, 1-\epsilon, 1+\epsilon)\hat{A}_{i}\big) - \beta\, \mathbb{D}_{KL}^{(i,t)}\Big] \\[4pt]"
        r"\mathbb{D}_{KL}^{(i,t)} = \frac{\pi_{ref}(o_{i,t}|\cdot)}{\pi_\theta(o_{i,t}|\cdot)} - \log\frac{\pi_{ref}(o_{i,t}|\cdot)}{\pi_\theta(o_{i,t}|\cdot)} - 1",
        "Shao et al. 2024 (DeepSeekMath), Eq. 3 and the k3 KL estimator Eq. 4; Dr. GRPO normalisation: Liu et al. 2025",
        [losses.grpo_advantages, losses.grpo_loss],
        "The Train tab charts `reward` (mean reward-model score), `reward_std` (its spread within groups: 0 means no "
        "learning signal), `kl` (to the reference, nats) and `clip_ratio/region_mean` (fraction of clipped tokens).",
        excerpts=[Excerpt(losses.grpo_advantages, """\
grouped = rewards.view(-1, group_size)  # (n_prompts, G)
adv = grouped - grouped.mean(dim=1, keepdim=True)
if scale_rewards:
    adv = adv / (grouped.std(dim=1, keepdim=True) + eps)"""),
                  Excerpt(losses.grpo_loss, """\
ratio = torch.exp(logprobs - old_logprobs)
adv = advantages.unsqueeze(1)  # (B, 1)
per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv)
if beta != 0.0 and ref_logprobs is not None:
    d = ref_logprobs - logprobs
    kl = torch.exp(d) - d - 1
    per_token = per_token + beta * (kl * ratio if kl_importance_weight else kl)
if loss_type == "grpo":
    return masked_mean(per_token, mask, dim=1).mean()""")],
        worked=_worked_grpo,
        version_notes="TRL's `GRPOTrainer` logs `reward`, `reward_std`, `kl`, `clip_ratio/region_mean`; "
                      "`loss_type='dr_grpo'` divides by a constant instead of each answer's length. TRL 1.16 also "
                      "weights the KL term by the ratio $\\rho_{i,t}$ by default (`use_bias_correction_kl`), which our "
                      "`grpo_loss` reproduces with `kl_importance_weight=True`.",
    ),
]

COMPARISON_TABLE = [
    # method, models in memory during training, data, generation during training, stability, compute per step
    {"method": "Reward model", "models": "1 (scorer)", "data": "preference pairs", "samples during training": "no",
     "stability": "stable (supervised)", "cost per step": "1 forward/backward per response"},
    {"method": "DPO", "models": "2 (policy, reference)", "data": "preference pairs (offline)",
     "samples during training": "no", "stability": "stable; can over-fit pairs",
     "cost per step": "forward/backward on chosen+rejected, reference forward"},
    {"method": "PPO", "models": "4 (policy, reference, reward model, value head)",
     "data": "prompts + a reward model", "samples during training": "yes", "stability": "sensitive to KL coefficient, "
     "learning rates, value init", "cost per step": "generation + scoring + several epochs over mini-batches"},
    {"method": "GRPO", "models": "3 (policy, reference, reward model)", "data": "prompts + a reward function",
     "samples during training": "yes, G per prompt", "stability": "stable on verifiable rewards; group noise",
     "cost per step": "G generations per prompt + scoring, one update"},
]


def lesson_code(lesson: Lesson) -> str:
    """The source of the lesson's functions, exactly as the project runs them (docstrings included: the notebook)."""
    return "\n\n".join(inspect.getsource(fn) for fn in lesson.functions)


def function_body(fn: Callable) -> list[str]:
    """The lines of ``fn``'s body after its docstring, with the body's indentation removed."""
    src = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(src).body[0]
    stmts = node.body[1:] if ast.get_docstring(node) is not None else node.body
    lines = src.splitlines()
    return textwrap.dedent("\n".join(lines[stmts[0].lineno - 1:node.end_lineno])).splitlines()


def excerpt_is_verbatim(ex: Excerpt) -> bool:
    """True when ``ex.lines`` is a run of consecutive lines of its function's body, character for character."""
    body, want = function_body(ex.function), ex.lines.splitlines()
    return any(body[i:i + len(want)] == want for i in range(len(body) - len(want) + 1))


def check_excerpts(lesson: Lesson) -> None:
    """Raise ValueError naming the first excerpt of ``lesson`` that is no longer verbatim in alignment/losses.py."""
    for ex in lesson.excerpts:
        if not excerpt_is_verbatim(ex):
            raise ValueError(f"{lesson.key}: the excerpt of {ex.function.__name__} is no longer in alignment/losses.py")


def lesson_excerpt_code(lesson: Lesson) -> str:
    """Only the lines that compute the formula, each excerpt headed by the function it comes from (the Learn tab).

    An excerpt that drifted from ``alignment/losses.py`` (the tests catch it) is replaced by its function's whole
    body, so a student never reads code that does not run."""
    parts = []
    for ex in lesson.excerpts:
        params = ", ".join(inspect.signature(ex.function).parameters)
        lines = ex.lines if excerpt_is_verbatim(ex) else "\n".join(function_body(ex.function))
        parts.append(f"# alignment/losses.py, inside {ex.function.__name__}({params})\n{lines}")
    return "\n\n".join(parts)


def worked_example(lesson: Lesson) -> dict:
    """``{"inputs", "values", "text"}``: the lesson's loss function called on a tiny input, its outputs in
    ``values`` (floats, nats where a loss) and one Markdown paragraph that states them."""
    return lesson.worked() if lesson.worked else {"inputs": {}, "values": {}, "text": ""}


def lesson_markdown(lesson: Lesson, delimiter: str = "$$") -> str:
    """Title, explanation, formula (between ``delimiter``), its source and what the Train tab charts, as Markdown
    (no version notes)."""
    return (f"### {lesson.title}\n\n{lesson.summary}\n\n{delimiter}\n{lesson.formula}\n{delimiter}\n\n"
            f"*Source: {lesson.source}.* {lesson.notes}")


def lesson_formula_markdown(lesson: Lesson, delimiter: str = "$$") -> str:
    """Explanation, formula and its source (the Learn tab, above the code; the accordion shows the title)."""
    return f"{lesson.summary}\n\n{delimiter}\n{lesson.formula}\n{delimiter}\n\n*Source: {lesson.source}.*"


def comparison_markdown() -> str:
    keys = list(COMPARISON_TABLE[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in COMPARISON_TABLE]
    return "\n".join(lines)



# ----------------------------------------------------------------------------- reward over-optimisation
OVEROPTIMIZATION = {
    "title": "Reward over-optimisation: when the score stops meaning what people want",
    "summary": (
        "A reward model is a *proxy*: it learnt from a few hundred comparisons, with their biases. PPO and GRPO "
        "push the policy toward whatever the proxy scores high, including its mistakes (Goodhart's law: a measure "
        "that becomes a target stops being a good measure). Gao et al. 2023 trained policies against a proxy "
        "reward model and watched a *gold* one nobody trained against: as the policy moves away from where it "
        "started, the proxy score keeps climbing while the gold score rises, peaks and falls. They fit the gold "
        "score of RL-trained policies as a function of the distance $d$ from the initial policy:"),
    "formula": (r"d = \sqrt{D_{KL}\big(\pi \,\|\, \pi_{init}\big)} \qquad "
                r"R_{gold}(d) = d\,\big(\alpha - \beta \log d\big)"),
    "source": ("Gao, Schulman and Hilton 2023, \"Scaling Laws for Reward Model Overoptimization\", Sec. 3 (the RL "
               "functional form); length as the bias reward models pick up: Singhal et al. 2023, \"A Long Way to "
               "Go: Investigating Length Correlations in RLHF\"; the KL penalty that limits it: Ziegler et al. "
               "2019, Sec. 2.2"),
    "in_the_app": (
        "**What this app shows.** The reward run trains two reward models on disjoint halves of the pairs: the "
        "*proxy* (PPO and GRPO optimise it) and the *gold* one (only watched). Every policy run keeps a **film "
        "strip**: before its first step and every 10 steps it answers the same 8 evaluation prompts, scored by "
        "the proxy, the gold reward model and the rules (exact checks, no model), with the KL to base "
        "(`film_strip.jsonl` in the run directory). PPO and GRPO also log the gold score of every rollout "
        "(`gold/scores`, next to `objective/raw_scores`). The Train tab's film strip and the Report's "
        "over-optimisation chart draw the change of each score against the KL.\n\n"
        "**The exercise.**\n"
        "1. **4 · Train**: method *Reward model*, *Planted reward flaw*: **length** (in every pair the longer "
        "answer is labelled chosen, as if the annotators liked long answers). Its held-out accuracy, measured on "
        "clean pairs, drops: the flaw is visible before any policy is trained.\n"
        "2. Train **PPO** and then **GRPO**: they optimise your newest reward model, the flawed one.\n"
        "3. Open the film strip: expect the proxy line to climb with the KL and the answers to get longer, while "
        "the gold and rules lines stay flat or fall. DPO learns from the pairs, not from the proxy: its frames "
        "are the control.\n"
        "4. **6 · Report** with your runs: compare the proxy-RM and the gold-RM win rates; the report names the "
        "planted flaw in its caveats.\n\n"
        "**Discuss.** Why does a larger KL coefficient (beta) delay the fall? Why can a bigger or better reward "
        "model only delay it, not remove it (Gao et al.'s scaling laws)? Which of your own annotation habits "
        "could a reward model learn as a flaw?"),
}


def overoptimization_markdown(delimiter: str = "$$") -> str:
    """The over-optimisation lesson as Markdown: explanation, Gao et al.'s functional form, sources, what the app
    shows and the reward-hacking exercise (the Learn tab and the notebook)."""
    o = OVEROPTIMIZATION
    return (f"{o['summary']}\n\n{delimiter}\n{o['formula']}\n{delimiter}\n\n*Source: {o['source']}.*\n\n"
            f"{o['in_the_app']}")
