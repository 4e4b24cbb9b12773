"""Every trainer runs a few steps on the tiny model: every trained parameter changes, the run directory is
complete, metrics carry the standard names, and the stop flag ends a run with a valid directory."""

import json

import pytest
import torch
from peft import get_peft_model

from alignment.config import make_config
from alignment.data import fit_to_length, split_pairs
from alignment.generation import RewardScorer
from alignment.models import load_causal_lm, load_sequence_classifier, lora_config
from alignment.trainers import train_dpo, train_grpo, train_ppo, train_reward_model
from alignment.trainers.common import RunContext, read_metrics

FAST = dict(max_steps=3, max_completion_length=12, max_prompt_length=64, learning_rate=5e-3)


@pytest.fixture(scope="module")
def splits(builtin_rows, tokenizer):
    rows = fit_to_length(builtin_rows[:60], tokenizer, 64, 12)
    return split_pairs(rows, seed=0)


@pytest.fixture(scope="module")
def scorer(tiny_source, tokenizer):
    torch.manual_seed(0)
    return RewardScorer(load_sequence_classifier(tiny_source, tokenizer), tokenizer)


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_all_changed(before, model):
    after = dict(model.named_parameters())
    assert before, "no trainable parameter"
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged, f"parameters that did not change: {unchanged[:5]}"


def _policy(tiny_source, tokenizer, cfg):
    torch.manual_seed(0)
    return get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config(cfg.lora_r, cfg.lora_alpha))


def _check_run_dir(run_dir, keys):
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for key in keys:
        assert all(key in m for m in metrics), key
    assert (run_dir / "adapter" / "adapter_config.json").is_file()


def test_reward_trainer(tmp_path, tiny_source, tokenizer, splits):
    cfg = make_config("reward", **FAST)
    model = get_peft_model(load_sequence_classifier(tiny_source, tokenizer), lora_config(task_type="SEQ_CLS"))
    before = _trainable(model)
    ctx = RunContext(tmp_path / "reward", "reward", cfg.max_steps)
    scorer, result = train_reward_model(cfg, tiny_source, tokenizer, *splits, ctx, model=model)
    _assert_all_changed(before, model)
    assert any("score" in n for n in before) and any("lora_" in n for n in before)
    _check_run_dir(ctx.run_dir, ["loss", "accuracy", "margin"])
    held = result["heldout"]
    assert held["n_pairs"] == len(splits[1]) and 0.0 <= held["accuracy"] <= 1.0
    assert len(held["errors"]) == round((1 - held["accuracy"]) * held["n_pairs"])
    # the in-session scorer runs in fp32, exactly like the reward model reloaded from its saved adapter
    from peft import PeftModel

    reloaded = RewardScorer(PeftModel.from_pretrained(load_sequence_classifier(tiny_source, tokenizer),
                                                      str(ctx.run_dir / "adapter")), tokenizer)
    prompts, responses = [r["prompt"] for r in splits[1][:4]], [r["chosen"] for r in splits[1][:4]]
    assert torch.allclose(scorer.score(prompts, responses), reloaded.score(prompts, responses), atol=1e-5)


def test_dpo_trainer(tmp_path, tiny_source, tokenizer, splits):
    cfg = make_config("dpo", **FAST)
    policy = _policy(tiny_source, tokenizer, cfg)
    before = _trainable(policy)
    ctx = RunContext(tmp_path / "dpo", "dpo", cfg.max_steps)
    train_dpo(cfg, tiny_source, tokenizer, splits[0], ctx, policy=policy)
    _assert_all_changed(before, policy)
    _check_run_dir(ctx.run_dir, ["loss", "rewards/margins", "rewards/accuracies", "logps/chosen"])


def test_grpo_trainer(tmp_path, tiny_source, tokenizer, splits, scorer, monkeypatch):
    from alignment.generation import MergedRolloutModel

    calls = []
    original = MergedRolloutModel.generate
    monkeypatch.setattr(MergedRolloutModel, "generate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    cfg = make_config("grpo", **FAST)
    policy = _policy(tiny_source, tokenizer, cfg)
    before = _trainable(policy)
    ctx = RunContext(tmp_path / "grpo", "grpo", cfg.max_steps)
    train_grpo(cfg, tiny_source, tokenizer, splits[0], scorer, ctx, policy=policy)
    assert len(calls) == cfg.max_steps  # TRL sampled every rollout from the bf16 merged copy
    assert "generate" not in policy.__dict__  # and the policy's own generate is back
    _assert_all_changed(before, policy)
    _check_run_dir(ctx.run_dir, ["loss", "reward", "kl"])
    assert read_metrics(ctx.run_dir / "metrics.jsonl")[-1]["kl"] > 0  # beta > 0 by default: KL is measured


@pytest.mark.parametrize("controller", ["fixed", "adaptive"])
def test_ppo_trainer(tmp_path, tiny_source, tokenizer, splits, scorer, controller):
    cfg = make_config("ppo", **FAST, kl_controller=controller, batch_size=4)
    policy = _policy(tiny_source, tokenizer, cfg)
    before = _trainable(policy)
    ctx = RunContext(tmp_path / "ppo", "ppo", cfg.max_steps)
    train_ppo(cfg, tiny_source, tokenizer, splits[0], scorer, ctx, policy=policy)
    _assert_all_changed(before, policy)
    names = ["objective/kl", "objective/entropy", "objective/non_score_reward", "objective/rlhf_reward",
             "objective/scores", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg",
             "val/clipfrac_avg", "val/ratio", "val/num_eos_tokens"]
    _check_run_dir(ctx.run_dir, names)
    head = torch.load(ctx.run_dir / "value_head.pt")
    assert head["summary.weight"].abs().sum() > 0  # the value head (zero-initialised) was trained
    _check_normalised_scores(ctx.run_dir, cfg)
    metrics = read_metrics(ctx.run_dir / "metrics.jsonl")
    coefs = [m["objective/kl_coef"] for m in metrics]
    assert (len(set(coefs)) == 1) == (controller == "fixed")
    # rlhf_reward = score + non-score reward, step by step
    for m in metrics:
        assert m["objective/rlhf_reward"] == pytest.approx(m["objective/scores"] + m["objective/non_score_reward"], abs=1e-4)


def _check_normalised_scores(run_dir, cfg):
    """PPO optimises gain * score + bias (fitted on the base policy's answers), minus the missing-EOS penalty."""
    norm = json.loads((run_dir / "reward_normalization.json").read_text())
    assert norm["n"] == cfg.reward_norm_samples and norm["gain"] == pytest.approx(1 / norm["std"])
    for row in read_metrics(run_dir / "metrics.jsonl"):
        no_eos = 1 - row["val/num_eos_tokens"] / cfg.batch_size
        expected = norm["gain"] * row["objective/raw_scores"] + norm["bias"] - cfg.missing_eos_penalty * no_eos
        assert row["objective/scores"] == pytest.approx(expected, abs=1e-4)


def test_ppo_reward_normalization_fits_the_base_policys_scores(tmp_path, tiny_source, tokenizer, splits):
    """Ziegler et al. 2019: the reward model's scores of the base policy's answers get mean 0 and std 1. A scorer
    with a known scale and offset (10 x length + 100) must give back exactly that gain and bias; with
    ``reward_norm_samples=0`` PPO optimises the raw score."""
    from alignment.trainers.ppo import fit_reward_normalization

    class LengthScorer:  # score = 10 * words + 100: a reward model with a large scale and offset
        def score(self, prompts, responses, bf16=False):
            return torch.tensor([10.0 * len(r.split()) + 100.0 for r in responses])

    cfg = make_config("ppo", **dict(FAST, max_steps=1), batch_size=4, reward_norm_samples=12)
    policy = _policy(tiny_source, tokenizer, cfg)
    norm = fit_reward_normalization(policy, tokenizer, [r["prompt"] for r in splits[0]], LengthScorer(), cfg)
    assert norm["n"] == 12 and norm["mean"] > 100
    assert norm["gain"] * norm["mean"] + norm["bias"] == pytest.approx(0.0, abs=1e-6)
    assert norm["std"] > 0 and norm["gain"] == pytest.approx(1 / norm["std"])
    ctx = RunContext(tmp_path / "norm", "ppo", 1)
    train_ppo(cfg, tiny_source, tokenizer, splits[0], LengthScorer(), ctx, policy=policy)
    _check_normalised_scores(ctx.run_dir, cfg)
    raw_cfg = make_config("ppo", **dict(FAST, max_steps=1), batch_size=4, reward_norm_samples=0)
    ctx = RunContext(tmp_path / "raw", "ppo", 1)
    train_ppo(raw_cfg, tiny_source, tokenizer, splits[0], LengthScorer(), ctx, policy=_policy(tiny_source, tokenizer, raw_cfg))
    assert not (ctx.run_dir / "reward_normalization.json").exists()
    row = read_metrics(ctx.run_dir / "metrics.jsonl")[-1]
    no_eos = 1 - row["val/num_eos_tokens"] / raw_cfg.batch_size
    assert row["objective/scores"] == pytest.approx(row["objective/raw_scores"] - raw_cfg.missing_eos_penalty * no_eos,
                                                    abs=1e-4)


def test_ppo_old_logprobs_reuse_the_first_minibatch_forward(tmp_path, tiny_source, tokenizer, splits, scorer,
                                                             monkeypatch):
    # The first minibatch's training forward doubles as its old log-probs/values: the old values PPO uses must
    # equal a separate no-grad forward of the whole batch (row order included), with one forward of B/2 rows saved.
    from alignment.trainers import ppo

    cfg = make_config("ppo", **dict(FAST, max_steps=1), batch_size=4, num_mini_batches=2, ppo_epochs=2, bf16=False)
    policy = _policy(tiny_source, tokenizer, cfg)
    packed, rows_forwarded, checked = {}, [], []
    real_pack, real_forward, real_rewards = ppo.pack_responses, ppo.forward_policy, ppo.kl_penalty_rewards

    def pack(*args, **kwargs):
        packed["batch"] = real_pack(*args, **kwargs)
        return packed["batch"]

    def forward(policy, value_head, input_ids, *args, **kwargs):
        rows_forwarded.append(input_ids.size(0))
        packed["value_head"] = value_head
        return real_forward(policy, value_head, input_ids, *args, **kwargs)

    def rewards(logprobs, ref_logprobs, scores, lengths, kl_coef):  # runs before the first update
        ids, attn, mask, P = packed["batch"]
        with torch.no_grad():
            expected, _, _ = real_forward(policy, packed["value_head"], ids, attn, P, cfg.temperature)
            with policy.disable_adapter():
                expected_ref = real_forward(policy, packed["value_head"], ids, attn, P, cfg.temperature)[0]
        torch.testing.assert_close(logprobs * mask, expected * mask, atol=1e-5, rtol=0)
        torch.testing.assert_close(ref_logprobs * mask, expected_ref * mask, atol=1e-5, rtol=0)
        checked.append(True)
        return real_rewards(logprobs, ref_logprobs, scores, lengths, kl_coef)

    monkeypatch.setattr(ppo, "pack_responses", pack)
    monkeypatch.setattr(ppo, "forward_policy", forward)
    monkeypatch.setattr(ppo, "kl_penalty_rewards", rewards)
    ctx = RunContext(tmp_path / "ppo", "ppo", 1)
    train_ppo(cfg, tiny_source, tokenizer, splits[0], scorer, ctx, policy=policy)
    assert checked == [True]
    # first minibatch (grad), the other minibatch (no grad), reference, then 3 more minibatch updates
    assert rows_forwarded == [2, 2, 4, 2, 2, 2]
    assert read_metrics(ctx.run_dir / "metrics.jsonl")[0]["val/ratio"] != 1.0  # later minibatches moved


def test_stop_flag_leaves_valid_run_dir(tmp_path, tiny_source, tokenizer, splits, scorer):
    cfg = make_config("ppo", **dict(FAST, max_steps=20), batch_size=2, num_mini_batches=1)
    seen = []

    def on_progress(step, total, metrics):
        seen.append(step)
        if step == 2:
            (ctx.run_dir / "STOP").write_text("")  # stop from outside, as the app's Stop button does

    ctx = RunContext(tmp_path / "ppo", "ppo", cfg.max_steps, on_progress=on_progress)
    train_ppo(cfg, tiny_source, tokenizer, splits[0], scorer, ctx)
    info = ctx.finish()
    assert seen == [1, 2] and info["status"] == "stopped" and info["steps_done"] == 2
    assert json.loads((ctx.run_dir / "run_info.json").read_text())["status"] == "stopped"
    assert (ctx.run_dir / "adapter" / "adapter_config.json").is_file()


def test_config_validation():
    with pytest.raises(ValueError, match="num_generations"):
        make_config("grpo", num_generations=1)
    with pytest.raises(ValueError, match="loss_type"):
        make_config("dpo", loss_type="bogus")
    with pytest.raises(ValueError, match="Unknown ppo setting"):
        make_config("ppo", clip=0.3)
    with pytest.raises(ValueError, match="divisible"):
        make_config("ppo", batch_size=5, num_mini_batches=2)
    assert make_config("dpo").max_steps == 30 and make_config("dpo", "quick").max_steps < 30
