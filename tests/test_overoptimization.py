"""Over-optimisation made visible: the gold reward model watches PPO's and GRPO's rollouts, film strips record
every policy's answers to fixed prompts, and the planted reward flaw of the reward-hacking exercise."""

import json

import pytest
import torch
from peft import get_peft_model

from alignment.config import make_config
from alignment.data import fit_to_length, split_pairs
from alignment.data.flaws import plant_flaw
from alignment.generation import MergedRolloutModel, generate_shared_noise
from alignment.models import load_causal_lm, lora_config
from alignment.report import film_strip_curves, figures
from alignment.rules import rule_for, rule_scores, score_answer
from alignment.trainers import train_dpo, train_grpo, train_ppo
from alignment.trainers.common import RunContext, read_metrics
from alignment.trainers.film_strip import FilmStrip, Referees, pick_prompts, read_film_strip

FAST = dict(max_steps=3, max_completion_length=10, max_prompt_length=64, learning_rate=5e-3)
EVAL = [{"category": c, "prompt": f"{c} question {i}?", **({"rule": {"kind": "concise", "max_words": 5}}
                                                            if c == "verbosity" else {})}
        for i in range(3) for c in ("factual", "constraint", "helpful", "harmless", "verbosity")]


class RecordingScorer:
    """A reward model stand-in with a known score (offset + characters of the answer) that records its calls."""

    def __init__(self, offset: float):
        self.offset, self.calls = offset, []

    def score(self, prompts, responses, bf16=False):
        out = torch.tensor([self.offset + len(r) for r in responses], dtype=torch.float32)
        self.calls.append(out)
        self.bf16 = getattr(self, "bf16", []) + [bf16]
        self.seen = getattr(self, "seen", []) + [(list(prompts), list(responses))]
        return out


@pytest.fixture(scope="module")
def train_rows(builtin_rows, tokenizer):
    return split_pairs(fit_to_length(builtin_rows[:40], tokenizer, 64, 10), seed=0)[0]


def _policy(tiny_source, tokenizer, cfg):
    torch.manual_seed(0)
    return get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config(cfg.lora_r, cfg.lora_alpha))


def test_plant_length_flaw_makes_the_longer_answer_chosen():
    rows = [{"prompt": "p", "chosen": "short", "rejected": "a much longer answer"},
            {"prompt": "p", "chosen": "the longer chosen one", "rejected": "tiny"},
            {"prompt": "p", "chosen": "same", "rejected": "size"}]
    flawed, changed = plant_flaw(rows, "length")
    assert changed == 1
    assert flawed[0]["chosen"] == "a much longer answer" and flawed[0]["rejected"] == "short"
    assert flawed[1] == rows[1] and flawed[2] == rows[2]  # already longer-chosen, or equal: untouched
    assert rows[0]["chosen"] == "short"  # the input is not modified
    assert plant_flaw(rows, "none") == (rows, 0)
    with pytest.raises(ValueError, match="length"):
        plant_flaw(rows, "verbose")


def test_reward_flaw_is_a_validated_setting():
    assert make_config("reward", reward_flaw="length").reward_flaw == "length"
    with pytest.raises(ValueError, match="reward_flaw"):
        make_config("reward", reward_flaw="shorter")


def test_pick_prompts_spreads_over_categories():
    picked = pick_prompts(EVAL, 8)
    assert len(picked) == 8
    assert {p["category"] for p in picked[:5]} == {"factual", "constraint", "helpful", "harmless", "verbosity"}
    assert pick_prompts(EVAL, 8) == picked  # deterministic
    assert len(pick_prompts(EVAL[:3], 8)) == 3


def test_film_strip_frame_scores_what_it_sampled(tmp_path, tiny_source, tokenizer):
    cfg = make_config("dpo", **FAST)
    policy = _policy(tiny_source, tokenizer, cfg)
    proxy, gold = RecordingScorer(0.0), RecordingScorer(100.0)
    prompts = pick_prompts(EVAL, 5)
    strip = FilmStrip(tmp_path, tokenizer, prompts, Referees(proxy, gold), every=2, max_new_tokens=10, seed=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    frame = strip.capture(0, policy)
    assert torch.equal(torch.get_rng_state(), state)  # the training's random numbers are untouched
    # the answers are the policy's samples at this seed; scores, rules and lengths are of those answers
    expected = generate_shared_noise(policy, tokenizer, [p["prompt"] for p in prompts], None, list(range(len(prompts))),
                                     max_new_tokens=10, temperature=0.7, seed=3)
    answers = frame["answers"]
    assert [a["response"] for a in answers] == [g.text for g in expected]
    assert [a["proxy"] for a in answers] == pytest.approx([len(g.text) for g in expected])
    assert [a["gold"] for a in answers] == pytest.approx([100 + len(g.text) for g in expected])
    assert [a["rules"] for a in answers] == [score_answer(p, g.text) for p, g in zip(prompts, expected)]
    assert [a["length_tokens"] for a in answers] == [g.length for g in expected]
    assert all(abs(a["kl"]) < 1e-4 for a in answers)  # a fresh LoRA adapter (B = 0) is the reference itself
    assert frame["mean"]["gold"] == pytest.approx(sum(a["gold"] for a in answers) / 5)
    assert strip.maybe_capture(0, policy) is None and strip.maybe_capture(1, policy) is None  # once, every 2 steps
    assert strip.maybe_capture(1, policy, final=True)["step"] == 1
    assert [f["step"] for f in read_film_strip(tmp_path)] == [0, 1]
    assert proxy.bf16 == gold.bf16 == [False, False]


def test_bf16_film_strip_samples_from_the_merged_copy_of_the_current_adapter(tmp_path, tiny_source, tokenizer):
    cfg = make_config("dpo", **FAST)
    policy = _policy(tiny_source, tokenizer, cfg)
    proxy, gold = RecordingScorer(0.0), RecordingScorer(100.0)
    prompts = pick_prompts(EVAL, 5)
    strip = FilmStrip(tmp_path, tokenizer, prompts, Referees(proxy, gold), every=1, max_new_tokens=10, seed=3,
                      bf16=True)

    def merged_answers():  # a fresh bf16 merged copy of the policy as it is now
        return [g.text for g in generate_shared_noise(MergedRolloutModel(policy).model, tokenizer,
                                                      [p["prompt"] for p in prompts], None, list(range(len(prompts))),
                                                      max_new_tokens=10, temperature=0.7, seed=3)]

    before = strip.capture(0, policy)
    assert [a["response"] for a in before["answers"]] == merged_answers()
    assert all(abs(a["kl"]) < 1e-4 for a in before["answers"])  # the KL's forwards are the fp32 policy's
    assert proxy.bf16 == gold.bf16 == [True]  # scored as the trainers score their rollouts
    torch.manual_seed(1)
    with torch.no_grad():  # the adapter moves: the strip's copy follows it
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    frame = strip.capture(1, policy)
    assert [a["response"] for a in frame["answers"]] == merged_answers() != [a["response"] for a in before["answers"]]
    assert frame["mean"]["kl"] > 0.01


def test_ppo_logs_gold_scores_and_film_strip_without_changing_training(tmp_path, tiny_source, tokenizer, train_rows):
    cfg = make_config("ppo", **FAST, batch_size=4, film_strip_every=2)
    proxy, gold = RecordingScorer(0.0), RecordingScorer(50.0)

    def run(name, with_watch):
        policy = _policy(tiny_source, tokenizer, cfg)
        ctx = RunContext(tmp_path / name, "ppo", cfg.max_steps)
        strip = FilmStrip(ctx.run_dir, tokenizer, pick_prompts(EVAL, 3), Referees(proxy, gold), every=2,
                          max_new_tokens=10) if with_watch else None  # 3 answers a frame, 4 a rollout
        train_ppo(cfg, tiny_source, tokenizer, train_rows, proxy, ctx, policy=policy,
                  gold_scorer=gold if with_watch else None, film_strip=strip)
        return policy, ctx.run_dir

    plain, _ = run("plain", False)
    gold.calls.clear()
    watched, run_dir = run("watched", True)
    for (n, a), b in zip(plain.named_parameters(), watched.parameters()):
        assert torch.equal(a, b), f"{n}: the gold model and the film strip changed the training"
    metrics = read_metrics(run_dir / "metrics.jsonl")
    rollout_means = [float(c.mean()) for c in gold.calls if len(c) == cfg.batch_size]
    assert [m["gold/scores"] for m in metrics] == pytest.approx(rollout_means)
    # the rules watch too, on the built-in prompts that have one (never optimised)
    rollouts = [seen for seen in proxy.seen if len(seen[1]) == cfg.batch_size][-len(metrics):]  # the watched run's
    expected = [sum(r) / len(r) for r in (rule_scores(p, t) for p, t in rollouts)]
    assert [m["rules/scores"] for m in metrics] == pytest.approx(expected)
    assert [f["step"] for f in read_film_strip(run_dir)] == [0, 2, 3]  # before, every 2 steps, the last one
    assert "gold/scores" not in read_metrics(tmp_path / "plain" / "metrics.jsonl")[0]


def test_grpo_logs_raw_proxy_and_gold_scores(tmp_path, tiny_source, tokenizer, train_rows):
    cfg = make_config("grpo", **FAST, film_strip_every=0)
    proxy, gold = RecordingScorer(0.0), RecordingScorer(-7.0)
    ctx = RunContext(tmp_path / "grpo", "grpo", cfg.max_steps)
    train_grpo(cfg, tiny_source, tokenizer, train_rows, proxy, ctx, policy=_policy(tiny_source, tokenizer, cfg),
               gold_scorer=gold)
    metrics = read_metrics(ctx.run_dir / "metrics.jsonl")
    assert [m["objective/raw_scores"] for m in metrics] == pytest.approx([float(c.mean()) for c in proxy.calls])
    assert [m["gold/scores"] for m in metrics] == pytest.approx([float(c.mean()) for c in gold.calls])
    expected = [sum(r) / len(r) for r in (rule_scores(p, t) for p, t in proxy.seen)]
    assert [m["rules/scores"] for m in metrics] == pytest.approx(expected)
    # the gold model is watched, never optimised: TRL's reward is the proxy's (minus the missing-EOS penalty)
    assert all(m["reward"] <= m["objective/raw_scores"] + 1e-4 for m in metrics)
    assert not (ctx.run_dir / "film_strip.jsonl").exists()


def test_dpo_film_strip_and_report_curves(tmp_path, tiny_source, tokenizer, train_rows, monkeypatch):
    cfg = make_config("dpo", **FAST, film_strip_every=2)
    assert cfg.bf16
    autocast_in_frames, capture = [], FilmStrip.capture

    def watched_capture(self, step, policy, rollout=None):  # records whether each decoder layer ran under autocast
        hooks = [layer.register_forward_hook(lambda *a: autocast_in_frames.append(torch.is_autocast_enabled("cpu")))
                 for layer in policy.get_base_model().model.layers]
        try:
            return capture(self, step, policy, rollout)
        finally:
            for h in hooks:
                h.remove()

    monkeypatch.setattr(FilmStrip, "capture", watched_capture)
    proxy, gold = RecordingScorer(0.0), RecordingScorer(10.0)
    ctx = RunContext(tmp_path / "dpo", "dpo", cfg.max_steps)
    strip = FilmStrip(ctx.run_dir, tokenizer, pick_prompts(EVAL, 4), Referees(proxy, gold), every=2, max_new_tokens=10,
                      bf16=cfg.bf16)  # as alignment.registry.film_strip makes it
    train_dpo(cfg, tiny_source, tokenizer, train_rows, ctx, policy=_policy(tiny_source, tokenizer, cfg),
              film_strip=strip)
    frames = read_film_strip(ctx.run_dir)
    assert [f["step"] for f in frames] == [0, 2, 3]
    assert frames[0]["mean"]["kl"] == pytest.approx(0.0, abs=1e-4) and frames[-1]["mean"]["kl"] != 0.0
    # TRL's accelerate runs the training forward under bf16 autocast; the frames' forward passes run in fp32
    assert autocast_in_frames and not any(autocast_in_frames)
    curves = film_strip_curves({"dpo": {"run_dir": str(ctx.run_dir)}, "reward": {"run_dir": None}})
    assert list(curves) == ["dpo"] and [p["step"] for p in curves["dpo"]] == [0, 2, 3]
    assert curves["dpo"][1]["gold"] == pytest.approx(frames[1]["mean"]["gold"])
    fig = figures({"dpo": {"run_dir": str(ctx.run_dir), "history": []}}, None)["overoptimization"]
    gold_trace = [t for t in fig.data if t.yaxis == "y2"][0]  # the second panel: the gold RM's change since step 0
    assert list(gold_trace.y) == pytest.approx([f["mean"]["gold"] - frames[0]["mean"]["gold"] for f in frames])


def test_a_stopped_run_takes_no_further_frame(tmp_path, tiny_source, tokenizer, train_rows):
    cfg = make_config("dpo", **FAST, film_strip_every=1)
    ctx = RunContext(tmp_path / "dpo", "dpo", cfg.max_steps)
    strip = FilmStrip(ctx.run_dir, tokenizer, pick_prompts(EVAL, 2), every=1, max_new_tokens=6)
    ctx.stop_event.set()  # Stop before the run starts: it ends after its first step, with no frame at all
    train_dpo(cfg, tiny_source, tokenizer, train_rows, ctx, policy=_policy(tiny_source, tokenizer, cfg),
              film_strip=strip)
    assert read_film_strip(ctx.run_dir) == []
    assert json.loads((ctx.run_dir / "run_info.json").read_text())["status"] == "running"  # finish() is the caller's


def test_train_tab_film_rows_newest_frame_first():
    from ui.train_tab import FILM_HEADERS, film_rows

    frames = [{"step": s, "answers": [{"prompt": "p", "category": "factual", "response": f"answer {s}",
                                       "proxy": 0.123 * s, "gold": None, "rules": 1.0, "kl": 0.5, "length_tokens": 3}]}
              for s in (0, 10)]
    rows = film_rows(frames)
    assert [r[0] for r in rows] == [10, 0] and len(rows[0]) == len(FILM_HEADERS)
    assert rows[0][3] == "answer 10" and rows[0][4] == 1.23 and rows[0][5] == "-"  # no gold model: "-"
    assert len(film_rows(frames * 30, limit=7)) == 7


def test_built_in_training_prompts_have_rules_that_agree_with_their_pairs(builtin_rows):
    """Most built-in training prompts have a rule (looked up by the conversation's last user turn); by it the chosen
    answer never scores below the rejected one."""
    ruled = [r for r in builtin_rows if rule_for({"prompt": r["prompt"]})]
    assert len(ruled) >= 0.9 * len(builtin_rows)
    for r in ruled:
        chosen, rejected = (score_answer({"prompt": r["prompt"]}, r[k]) for k in ("chosen", "rejected"))
        assert chosen >= rejected, r
    assert sum(score_answer({"prompt": r["prompt"]}, r["chosen"]) > score_answer({"prompt": r["prompt"]}, r["rejected"])
               for r in ruled) >= 0.9 * len(ruled)
    assert rule_for({"prompt": [{"role": "user", "content": "Tell me about HH-RLHF."}]}) is None


def test_the_film_strip_is_named_only_when_it_takes_a_frame(tmp_path, tiny_source, tokenizer, train_rows):
    """The progress label says "film strip" for the frames only (steps 0, 2 and the last), not after every step."""
    phases = []

    class Progress:
        def __call__(self, step, total, metrics):
            pass

        def phase(self, name, step=None):
            phases.append(name)

    cfg = make_config("dpo", **FAST, film_strip_every=2)
    ctx = RunContext(tmp_path / "dpo", "dpo", cfg.max_steps, on_progress=Progress())
    strip = FilmStrip(ctx.run_dir, tokenizer, pick_prompts(EVAL, 2), every=2, max_new_tokens=6)
    train_dpo(cfg, tiny_source, tokenizer, train_rows, ctx, policy=_policy(tiny_source, tokenizer, cfg), film_strip=strip)
    assert phases.count("film strip") == 3 and [f["step"] for f in read_film_strip(ctx.run_dir)] == [0, 2, 3]
