"""bf16 autocast (the default for training) against the fp32 path on the first step.

Tolerances: 1% relative on summed sequence log-probs and losses, 0.02 nats absolute per token on PPO's
log-probs. bf16 keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4%); the sums accumulate in fp32.
"""

import pytest
import torch
from peft import get_peft_model

from alignment.config import make_config
from alignment.data import fit_to_length
from alignment.generation import RewardScorer, generate, pack_responses
from alignment.models import load_causal_lm, load_sequence_classifier, lora_config
from alignment.trainers import train_dpo, train_reward_model
from alignment.trainers.common import RunContext
from alignment.trainers.ppo import ValueHead, forward_policy


@pytest.fixture(scope="module")
def rows(builtin_rows, tokenizer):
    return fit_to_length(builtin_rows[:24], tokenizer, 64, 12)


def _first_step(tmp_path, train, name, bf16):
    ctx = RunContext(tmp_path / f"{name}-{bf16}", name, 1)
    train(make_config(name, max_steps=1, bf16=bf16, max_prompt_length=64, max_completion_length=12), ctx)
    return ctx.history[0]


def test_dpo_first_step_bf16_matches_fp32(tmp_path, tiny_source, tokenizer, rows):
    def train(cfg, ctx):
        torch.manual_seed(0)
        policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config())
        train_dpo(cfg, tiny_source, tokenizer, rows, ctx, policy=policy)

    fp32, bf16 = (_first_step(tmp_path, train, "dpo", flag) for flag in (False, True))
    for key in ("logps/chosen", "logps/rejected", "loss"):
        assert bf16[key] == pytest.approx(fp32[key], rel=1e-2), key


def test_reward_first_step_bf16_matches_fp32(tmp_path, tiny_source, tokenizer, rows):
    def train(cfg, ctx):
        torch.manual_seed(0)
        model = get_peft_model(load_sequence_classifier(tiny_source, tokenizer, seed=0), lora_config(task_type="SEQ_CLS"))
        train_reward_model(cfg, tiny_source, tokenizer, rows, [], ctx, model=model)

    fp32, bf16 = (_first_step(tmp_path, train, "reward", flag) for flag in (False, True))
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=1e-2)


def test_ppo_logprobs_and_values_bf16_match_fp32(tiny_source, tokenizer):
    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config())
    head = ValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(head.summary.weight, std=0.1)
    prompts = ["What is the capital of France?", "Describe a cat in exactly 5 words."]
    gens = generate(policy, tokenizer, prompts, max_new_tokens=12, seed=0)
    ids, attn, mask, P = pack_responses(tokenizer, prompts, [g.token_ids for g in gens])
    with torch.no_grad():
        lp32, v32, _ = forward_policy(policy, head, ids, attn, P, 0.7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lp16, v16, _ = forward_policy(policy, head, ids, attn, P, 0.7)
    assert lp16.dtype == torch.float32  # log-softmax runs in fp32 even under autocast
    assert ((lp16 - lp32).abs() * mask).max() < 0.02
    assert ((v16 - v32).abs() * mask).max() < 0.02


def test_bf16_sampling_distribution_matches_fp32(tiny_source, tokenizer):
    # The rollouts of PPO and GRPO are sampled from a bf16 copy of the policy (``MergedRolloutModel``): its
    # next-token distribution softmax(logits / T) is within 0.02 total variation of the fp32 one (the log-probs
    # used in the losses are recomputed in the training precision, see above).
    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config())
    enc = tokenizer(["What is the capital of France?", "Name a color."], return_tensors="pt", padding=True)
    with torch.no_grad():
        p32 = torch.softmax(policy(**enc).logits[:, -1].float() / 0.7, -1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            p16 = torch.softmax(policy(**enc).logits[:, -1].float() / 0.7, -1)
    tv = 0.5 * (p32 - p16).abs().sum(-1)
    assert tv.max() < 0.02, tv


def test_lm_head_on_labelled_positions_gives_the_same_dpo_step(tmp_path, tiny_source, tokenizer, rows, monkeypatch):
    # TRL's fused LM head scoring only completion positions on CPU (``lm_head_on_labelled_positions_only``): the
    # patch takes effect (TRL's chunked log-prob kernel receives fewer rows: only the labelled positions) and
    # gives the same first-step numbers as scoring every position.
    import trl.trainer.utils as trl_utils

    kernel = trl_utils._ChunkedLogProbFunction
    original, rows_scored = kernel.apply, []

    def counting_apply(hidden, *args):
        rows_scored[-1] += hidden.shape[0]
        return original(hidden, *args)

    monkeypatch.setattr(kernel, "apply", counting_apply)

    def train(cfg, ctx):
        torch.manual_seed(0)
        policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config())
        train_dpo(cfg, tiny_source, tokenizer, rows, ctx, policy=policy)

    runs = []
    for flag in (False, True):
        rows_scored.append(0)
        ctx = RunContext(tmp_path / f"dpo-{flag}", "dpo", 2)
        train(make_config("dpo", max_steps=2, bf16=False, response_logits_only=flag, max_completion_length=12), ctx)
        runs.append(ctx.history)
    everything, labelled = rows_scored
    assert 0 < labelled < everything / 2, rows_scored  # prompts and padding are no longer scored
    for key in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
        assert [h[key] for h in runs[1]] == pytest.approx([h[key] for h in runs[0]], rel=1e-5, abs=1e-6), key


def test_bf16_reward_scores_match_fp32(tiny_source, tokenizer, builtin_rows):
    # PPO and GRPO score their training rewards under bf16 autocast, and so do the evaluation and Compare when the
    # reward run trained in bf16 (RewardScorer.bf16).
    torch.manual_seed(0)
    model = load_sequence_classifier(tiny_source, tokenizer, seed=0)
    torch.nn.init.normal_(model.score.weight, std=0.5)  # scores of order 1, like a trained reward model's
    scorer = RewardScorer(model, tokenizer)
    prompts = [r["prompt"] for r in builtin_rows[:8]]
    responses = [r["chosen"] for r in builtin_rows[:8]]
    fp32, bf16 = scorer.score(prompts, responses), scorer.score(prompts, responses, bf16=True)
    assert fp32.abs().mean() > 0.1
    assert (bf16 - fp32).abs().max() < 0.03 * fp32.abs().max()
    assert not torch.equal(bf16, fp32)  # the flag does change the precision
    # a scorer made with bf16=True (a reward run trained in bf16) scores in bf16 unless told otherwise
    scorer.bf16 = True
    assert torch.equal(scorer.score(prompts, responses), bf16)
    assert torch.equal(scorer.score(prompts, responses, bf16=False), fp32)
    assert scorer(prompts, responses) == bf16.tolist()


def test_reward_scorer_with_shared_prompts_matches_whole_conversations(tiny_source, tokenizer):
    # RewardScorer.score encodes each prompt once per batch and dedupes repeated rows; every score must be the
    # classifier's score of the whole conversation alone (left-truncated to max_length when longer)
    from alignment.generation import as_messages

    model = load_sequence_classifier(tiny_source, tokenizer, seed=0).eval()
    scorer = RewardScorer(model, tokenizer, max_length=60, batch_size=3)
    long_answer = " ".join(["words"] * 80)
    prompts = ["What is the capital of France?", "What is the capital of France?", "Name a color.",
               "What is the capital of France?", "Say hi.", "Name a color."]
    answers = ["Paris.", "Lyon is a big city in France.", "Blue", "Paris.", "", long_answer]
    got = scorer.score(prompts, answers)
    assert got.shape == (6,) and got[0] == got[3]
    with torch.no_grad():
        for j, (p, a) in enumerate(zip(prompts, answers)):
            text = scorer.tokenizer.apply_chat_template(as_messages(p) + [{"role": "assistant", "content": a}],
                                                        tokenize=False)
            enc = scorer.tokenizer([text], return_tensors="pt", truncation=True, max_length=60, add_special_tokens=False)
            assert got[j].item() == pytest.approx(model(**enc).logits[0, 0].item(), abs=1e-4), j
    assert len(scorer.tokenizer(text, add_special_tokens=False)["input_ids"]) > 60  # the last row was truncated
    assert len(set(got.tolist())) == 5
