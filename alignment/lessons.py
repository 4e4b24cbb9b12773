"""The teaching text: one source for the app's Learn tab, the notebook and the README.

Each ``Lesson`` pairs an objective (LaTeX, with its paper and equation number) with the project's own functions
that compute it; ``lesson_code`` shows those functions' source, so what students read is the code that runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from . import losses


@dataclass
class Lesson:
    key: str
    title: str
    summary: str
    formula: str  # LaTeX, display math without delimiters
    source: str
    functions: list = field(default_factory=list)
    notes: str = ""


LESSONS = [
    Lesson(
        "reward", "Reward model (Bradley-Terry)",
        "A reward model reads a prompt and a response and outputs one number. It is trained on pairs where people "
        "preferred one response (chosen, $y_w$) over another (rejected, $y_l$): the loss pushes the chosen score above "
        "the rejected one. Only the *difference* of scores matters, so rewards have no absolute zero.",
        r"\mathcal{L}_{RM}(\phi) = -\,\mathbb{E}_{(x, y_w, y_l)}\left[\log \sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big)\right]",
        "Bradley & Terry (1952); Ouyang et al. 2022 (InstructGPT), Eq. 1",
        [losses.bradley_terry_loss],
        "TRL's `RewardTrainer` minimises this loss; `center_rewards_coefficient` adds $\\eta\\,(r_w + r_l)^2$ to keep scores near 0.",
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
        "TRL logs `rewards/chosen`, `rewards/rejected`, `rewards/margins` (their difference) and `rewards/accuracies` "
        "(fraction of pairs with a positive margin).",
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
        "Our PPO (TRL 1.x removed its PPOTrainer) logs TRL's names: `objective/scores`, `objective/kl`, "
        "`policy/clipfrac_avg`, `val/clipfrac_avg`, `policy/approxkl_avg`.",
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
        "TRL's `GRPOTrainer` logs `reward`, `reward_std`, `kl`, `clip_ratio/region_mean`; `loss_type='dr_grpo'` divides "
        "by a constant instead of each answer's length. TRL 1.16 also weights the KL term by the ratio $\\rho_{i,t}$ by "
        "default (`use_bias_correction_kl`), which our `grpo_loss` reproduces with `kl_importance_weight=True`.",
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
    """The source of the lesson's functions, exactly as the project runs them."""
    return "\n\n".join(inspect.getsource(fn) for fn in lesson.functions)


def lesson_markdown(lesson: Lesson, delimiter: str = "$$") -> str:
    """Title, explanation, formula (between ``delimiter``) and source, as Markdown."""
    return (f"### {lesson.title}\n\n{lesson.summary}\n\n{delimiter}\n{lesson.formula}\n{delimiter}\n\n"
            f"*Source: {lesson.source}.* {lesson.notes}")


def comparison_markdown() -> str:
    keys = list(COMPARISON_TABLE[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in COMPARISON_TABLE]
    return "\n".join(lines)
