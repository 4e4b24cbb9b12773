"""Evaluation sampling: Gumbel-max with noise shared per prompt across models and batches."""

import pytest
import torch
from peft import get_peft_model

from alignment.evaluation import DecodingConfig, compare_answers
from alignment.generation import GumbelNoiseSampler, generate, generate_shared_noise
from alignment.models import load_causal_lm, lora_config

PROMPTS = ["What is the capital of France?", "Describe a cat in exactly 5 words.", "Name a color.", "Say hi."]


@pytest.fixture(scope="module")
def two_adapters(tiny_source, tokenizer):
    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config(), adapter_name="a")
    model.add_adapter("b", lora_config())
    model.add_adapter("same_as_a", lora_config())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, p in params.items():
            if "lora_" in name and ".a." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
                params[name.replace(".a.", ".same_as_a.")].copy_(p)
            elif "lora_" in name and ".b." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def test_gumbel_max_samples_from_softmax():
    # 20,000 independent keys at one step: empirical frequencies match softmax(logits / T) within 0.01
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20_000, 1)
    sampler = GumbelNoiseSampler(list(range(20_000)), prompt_width=3, temperature=0.7, seed=5)
    picks = sampler(torch.zeros(20_000, 3, dtype=torch.long), logits).argmax(-1)
    freq = torch.bincount(picks, minlength=4).float() / 20_000
    assert torch.allclose(freq, torch.softmax(logits[0] / 0.7, -1), atol=0.01)


def test_identical_models_give_identical_answers_and_batching_does_not_matter(two_adapters, tokenizer):
    rows = PROMPTS * 3
    names = ["a"] * 4 + ["same_as_a"] * 4 + ["b"] * 4
    keys = list(range(4)) * 3
    together = generate_shared_noise(two_adapters, tokenizer, rows, names, keys, max_new_tokens=10, seed=3)
    one_by_one = [generate_shared_noise(two_adapters, tokenizer, [p], [n], [k], max_new_tokens=10, seed=3)[0]
                  for p, n, k in zip(rows, names, keys)]
    assert [g.token_ids for g in together] == [g.token_ids for g in one_by_one]
    assert [g.token_ids for g in together[:4]] == [g.token_ids for g in together[4:8]]  # same weights, same noise
    assert [g.token_ids for g in together[:4]] != [g.token_ids for g in together[8:]]  # other weights


def test_mixed_batch_equals_each_adapter_alone(two_adapters, tokenizer):
    mixed = generate_shared_noise(two_adapters, tokenizer, PROMPTS * 2, ["a"] * 4 + ["__base__"] * 4,
                                  list(range(4)) * 2, max_new_tokens=8, seed=1)
    two_adapters.set_adapter("a")
    alone = generate_shared_noise(two_adapters, tokenizer, PROMPTS, None, list(range(4)), max_new_tokens=8, seed=1)
    with two_adapters.disable_adapter():
        base = generate_shared_noise(two_adapters, tokenizer, PROMPTS, None, list(range(4)), max_new_tokens=8, seed=1)
    assert [g.token_ids for g in mixed] == [g.token_ids for g in alone + base]


def test_compare_answers_kl_and_base(two_adapters, tokenizer):
    out = compare_answers(two_adapters, tokenizer, None, "Say hi.", ["base", "a", "same_as_a"],
                          DecodingConfig(max_new_tokens=8, seed=2))
    assert out["base"]["kl_to_base"] == 0.0 and out["a"]["reward"] is None
    assert out["a"]["response"] == out["same_as_a"]["response"]
    assert out["a"]["kl_to_base"] == pytest.approx(out["same_as_a"]["kl_to_base"], abs=1e-5)
    assert out["a"]["kl_to_base"] != 0.0


def test_merged_rollout_model_follows_the_adapter(tiny_source, tokenizer):
    from alignment.generation import MergedRolloutModel

    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config()).eval()
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    enc = tokenizer(["What is the capital of France?"], return_tensors="pt")
    own_dtype = policy.config.dtype
    exact = MergedRolloutModel(policy, torch.float32)
    assert (exact.model(**enc).logits - policy(**enc).logits).abs().max() < 1e-4
    with torch.no_grad():  # an optimizer step changes the adapter: sync() picks it up
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    assert (exact.model(**enc).logits - policy(**enc).logits).abs().max() > 1e-2
    exact.sync()
    assert (exact.model(**enc).logits - policy(**enc).logits).abs().max() < 1e-4
    fast = MergedRolloutModel(policy)  # bf16: the sampling distribution stays within 0.02 total variation
    with torch.no_grad():
        p32 = torch.softmax(policy(**enc).logits[:, -1] / 0.7, -1)
        p16 = torch.softmax(fast.model(**enc).logits[:, -1].float() / 0.7, -1)
    assert 0.5 * (p32 - p16).abs().sum() < 0.02
    assert next(fast.model.parameters()).dtype == torch.bfloat16
    assert policy.config.dtype == own_dtype and fast.model.config is not policy.config  # the policy's config kept


SHARPEN = 8.0


def test_rollout_samplers_draw_from_softmax_and_follow_the_seed(tiny_source, tokenizer):
    # PPO's generate(sampler="gumbel") and TRL's GenerationConfig through MergedRolloutModel.generate sample
    # the first token from softmax(logits / T), like HF's multinomial sampling, and torch.manual_seed fixes the draw.
    from transformers import GenerationConfig

    from alignment.generation import MergedRolloutModel, generate, prompt_texts

    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config()).eval()
    with torch.no_grad():  # sharpen the tiny model's near-uniform next-token distribution to a few dozen tokens
        policy.get_base_model().model.norm.weight.mul_(SHARPEN)
    rollout = MergedRolloutModel(policy, torch.float32)
    n, T = 1000, 0.7
    tokenizer.padding_side = "left"
    enc = tokenizer(prompt_texts(tokenizer, ["Say hi."]), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        expected = torch.softmax(policy(**enc).logits[0, -1] / T, -1)  # (V,)

    top = expected.topk(8).indices  # buckets: the 8 likeliest tokens and "any other"
    bucket_p = torch.cat([expected[top], 1 - expected[top].sum(0, keepdim=True)])

    def tv(first_tokens):  # total variation between the sampled and the expected bucket frequencies
        hit = torch.tensor(first_tokens)[:, None] == top  # (n, 8)
        buckets = torch.where(hit.any(1), hit.float().argmax(1), torch.tensor(8))
        freq = torch.bincount(buckets, minlength=9).float() / len(first_tokens)
        return 0.5 * (freq - bucket_p).abs().sum()

    gens = generate(rollout.model, tokenizer, ["Say hi."] * n, max_new_tokens=1, temperature=T, seed=1,
                    batch_size=n, sampler="gumbel")
    again = generate(rollout.model, tokenizer, ["Say hi."] * 4, max_new_tokens=6, temperature=T, seed=2, sampler="gumbel")
    assert again == generate(rollout.model, tokenizer, ["Say hi."] * 4, max_new_tokens=6, temperature=T, seed=2,
                             sampler="gumbel")
    multinomial = generate(rollout.model, tokenizer, ["Say hi."] * n, max_new_tokens=1, temperature=T, seed=1,
                           batch_size=n)
    config = GenerationConfig(do_sample=True, temperature=T, top_k=0, top_p=1.0, max_new_tokens=1,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    ids = enc["input_ids"].repeat(n, 1)
    trl_style = rollout.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    # sampling noise of n draws: each bucket frequency has standard deviation sqrt(p (1 - p) / n); 4 of them per
    # bucket, halved as in the TV, bounds the distance a correct sampler shows (about 0.05 here), while sampling at
    # the wrong temperature moves these buckets by far more
    bound = 0.5 * float((4 * (bucket_p * (1 - bucket_p) / n).sqrt()).sum())
    assert bound < 0.1
    assert tv([g.token_ids[0] for g in multinomial]) < bound
    assert tv([g.token_ids[0] for g in gens]) < bound
    assert tv(trl_style[:, -1].tolist()) < bound
    with pytest.raises(ValueError, match="sampler"):
        generate(rollout.model, tokenizer, ["Say hi."], sampler="top-k")


def test_log_ratio_does_not_depend_on_its_batch_size(two_adapters, tokenizer):
    # The evaluation computes KL log-ratios in small batches (memory: (B, T, V) fp32 logits per batch);
    # the numbers must not depend on the batch size, mixed-adapter batches included.
    from alignment.generation import sequence_log_ratio

    prompts = PROMPTS * 2
    responses = [[11, 22, 33, 44][: 1 + i % 4] for i in range(len(prompts))]
    adapters = ["a", "b"] * len(PROMPTS)
    whole = sequence_log_ratio(two_adapters, tokenizer, prompts, responses, 0.7, batch_size=8, adapter_names=adapters)
    small = sequence_log_ratio(two_adapters, tokenizer, prompts, responses, 0.7, batch_size=3, adapter_names=adapters)
    assert whole == pytest.approx(small, abs=1e-4)
    assert any(abs(v) > 1e-3 for v in whole)  # the adapters do move the log-probs


def test_logps_recorded_while_sampling_equal_a_forward_pass(two_adapters, tokenizer):
    # The evaluation's KL uses the log-probs recorded during sampling instead of a second forward pass of the
    # sampled model: they must be the forward pass's log softmax(logits / T) of each model's own tokens.
    from alignment.generation import pack_responses, response_logps, sequence_log_ratio

    rows = PROMPTS * 3
    names = ["a"] * 4 + ["b"] * 4 + ["__base__"] * 4
    gens = generate_shared_noise(two_adapters, tokenizer, rows, names, list(range(4)) * 3, max_new_tokens=10,
                                 temperature=0.7, seed=4)
    assert all(g.logps is not None and len(g.logps) == g.length for g in gens)
    ids, attn, _, P = pack_responses(tokenizer, rows, [g.token_ids for g in gens])
    with torch.no_grad():
        forward = response_logps(two_adapters, ids, attn, P, 0.7, adapter_names=names)  # (12, T)
    for j, g in enumerate(gens):
        assert torch.allclose(torch.tensor(g.logps), forward[j, :g.length], atol=1e-4), j
    responses = [g.token_ids for g in gens[:8]]
    computed = sequence_log_ratio(two_adapters, tokenizer, rows[:8], responses, 0.7, adapter_names=names[:8])
    recorded = sequence_log_ratio(two_adapters, tokenizer, rows[:8], responses, 0.7, adapter_names=names[:8],
                                  policy_logps=[g.logps for g in gens[:8]])
    assert recorded == pytest.approx(computed, abs=1e-4)
    assert max(abs(v) for v in computed) > 0.1  # the adapters differ from base: a real log-ratio was compared
    with pytest.raises(ValueError, match="one log-prob per response token"):
        sequence_log_ratio(two_adapters, tokenizer, rows[:1], responses[:1], 0.7, policy_logps=[[0.0]])


def test_prompt_cache_logps_equal_one_forward_over_prompt_and_response(two_adapters, tokenizer):
    # continuation_logps encodes each distinct (prompt, adapter) once and runs the responses alone: the log-probs
    # of one forward over prompt + response, for prompts of different lengths, three adapters in one batch,
    # batches that cut a prompt's rows apart, and repeated rows
    from alignment.generation import continuation_logps, pack_responses, response_logps

    rows = PROMPTS * 3 + PROMPTS[:2]
    names = ["a"] * 4 + ["b"] * 4 + ["__base__"] * 4 + ["a"] * 2
    gens = generate_shared_noise(two_adapters, tokenizer, rows[:12], names[:12], list(range(12)), max_new_tokens=10,
                                 temperature=0.7, seed=4)
    responses = [g.token_ids for g in gens] + [gens[0].token_ids, gens[5].token_ids]  # a repeat, a new pairing
    ids, attn, _, P = pack_responses(tokenizer, rows, responses)
    with torch.no_grad():
        forward = response_logps(two_adapters, ids, attn, P, 0.7, adapter_names=names)  # (14, T)
    cached = continuation_logps(two_adapters, tokenizer, rows, responses, 0.7, batch_size=5, adapter_names=names)
    for j, r in enumerate(responses):
        assert len(cached[j]) == len(r)
        assert torch.allclose(torch.tensor(cached[j]), forward[j, :len(r)], atol=1e-4), j
    assert cached[12] == cached[0]


EOS_BIAS = 7.0  # answers of 1 to 12 tokens from the tiny model (measured)


def test_own_decoding_loop_gives_the_answers_of_generate(two_adapters, tokenizer):
    # generate_shared_noise decodes with its own loop: each distinct (prompt, adapter) encoded once, finished rows
    # dropped from the batch. The answers and their recorded log-probs are those of HF generate with the same
    # Gumbel noise, each row decoded alone, for rows that end at different steps.
    import copy

    from transformers import LogitsProcessorList

    from alignment.generation import _generate_batches, continuation_logps

    model = copy.deepcopy(two_adapters)
    head = model.get_base_model().lm_head  # a bias on EOS's logit makes the random model end its answers early
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[tokenizer.eos_token_id] = EOS_BIAS
    model.get_base_model().lm_head = biased
    rows, names, keys = PROMPTS * 3, ["a"] * 8 + ["b"] * 4, list(range(12))
    ours = generate_shared_noise(model, tokenizer, rows, names, keys, max_new_tokens=12, seed=7)
    lengths = [g.length for g in ours]
    assert sum(g.ended_with_eos for g in ours) >= 4 and len(set(lengths)) >= 4 and max(lengths) == 12, lengths

    def one_row(start, enc):
        sampler = GumbelNoiseSampler(keys[start:start + 1], enc["input_ids"].size(1), 0.7, seed=7)
        return dict(do_sample=False, max_new_tokens=12, temperature=None, top_k=None, top_p=None,
                    logits_processor=LogitsProcessorList([sampler]), adapter_names=names[start:start + 1])

    theirs = _generate_batches(model, tokenizer, rows, 1, one_row)
    assert [g.token_ids for g in ours] == [g.token_ids for g in theirs]
    assert [g.ended_with_eos for g in ours] == [g.ended_with_eos for g in theirs]
    # the log-probs recorded while decoding are a forward pass's over the same tokens
    forward = continuation_logps(model, tokenizer, rows, [g.token_ids for g in theirs], 0.7, adapter_names=names)
    for o, f in zip(ours, forward):
        assert o.logps == pytest.approx(f, abs=1e-4)


def test_greedy_decoding_loop_equals_generate(two_adapters, tokenizer):
    two_adapters.set_adapter("b")
    ours = generate_shared_noise(two_adapters, tokenizer, PROMPTS, None, None, max_new_tokens=8, do_sample=False)
    theirs = generate(two_adapters, tokenizer, PROMPTS, max_new_tokens=8, do_sample=False, batch_size=1)
    assert [g.token_ids for g in ours] == [g.token_ids for g in theirs]
    assert all(g.logps is None for g in ours)


def test_kl_of_an_answer_base_also_gave_reuses_base_logps(two_adapters, tokenizer, monkeypatch):
    # The evaluation's KL: an aligned model's answer identical to base's answer to the same prompt takes base's
    # recorded log-probs (no forward); the others run the reference forward. Both give sequence_log_ratio's value.
    import alignment.evaluation as evaluation
    from alignment.generation import Generation, continuation_logps, sequence_log_ratio

    base = generate_shared_noise(two_adapters, tokenizer, PROMPTS, ["__base__"] * 4, list(range(4)), max_new_tokens=10,
                                 temperature=0.7, seed=4)
    own = generate_shared_noise(two_adapters, tokenizer, PROMPTS, ["a"] * 4, list(range(4)), max_new_tokens=10,
                                temperature=0.7, seed=4)
    # prompt 3 gets base's answer to prompt 1: the same tokens after another prompt need their own forward
    tokens = [base[0].token_ids, own[1].token_ids, base[2].token_ids, base[1].token_ids]
    assert tokens[1] != base[1].token_ids
    a_logps = continuation_logps(two_adapters, tokenizer, PROMPTS, tokens, 0.7, adapter_names=["a"] * 4)
    gens = base + [Generation("", t, True, lp) for t, lp in zip(tokens, a_logps)]
    computed = []

    def spy(model, tok, prompts, responses, *args, **kwargs):
        computed.extend(responses)
        return sequence_log_ratio(model, tok, prompts, responses, *args, **kwargs)

    monkeypatch.setattr(evaluation, "sequence_log_ratio", spy)
    kls = evaluation._log_ratios(two_adapters, tokenizer, PROMPTS * 2, ["__base__"] * 4 + ["a"] * 4, gens, 4,
                                 DecodingConfig(temperature=0.7), lambda *a: None)
    expected = sequence_log_ratio(two_adapters, tokenizer, PROMPTS, tokens, 0.7, adapter_names=["a"] * 4)
    assert kls[:4] == [0.0] * 4
    assert kls[4:] == pytest.approx(expected, abs=1e-4)
    assert abs(kls[4]) > 1e-3  # same tokens as base, other probabilities: a real log-ratio
    assert computed == [tokens[1], tokens[3]]  # only the answers base did not give ran a forward
