"""Our reference losses equal TRL's on identical inputs (within 1e-5), on small real batches built with the tiny
model and the real tokenizer: what students read in alignment/losses.py is what TRL optimises."""

import pytest
import torch
import trl
from datasets import Dataset
from peft import get_peft_model

from alignment.data import fit_to_length, to_trl_preference
from alignment.losses import bradley_terry_loss, dpo_loss, grpo_advantages, grpo_loss, sequence_logps
from alignment.models import load_causal_lm, load_sequence_classifier, lora_config

TOL = 1e-5


@pytest.fixture(scope="module")
def rows(builtin_rows, tokenizer):
    return fit_to_length(builtin_rows[:16], tokenizer, 64, 16)


def _common(tmp_path):
    return dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", per_device_train_batch_size=4,
                disable_dropout=True, max_steps=1)


def _perturb_lora(model, seed=0):
    """A fresh LoRA adapter is the identity (B = 0): give the trained ("default") adapter random weights so that
    policy != reference. (DPOTrainer keeps a frozen copy of a PeftModel's initial adapter as "ref".)"""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name and ".default." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_bradley_terry_equals_reward_trainer(tmp_path, tiny_source, tokenizer, rows):
    torch.manual_seed(0)
    model = _perturb_lora(get_peft_model(load_sequence_classifier(tiny_source, tokenizer),
                                         lora_config(task_type="SEQ_CLS")))
    tokenizer.padding_side = "right"
    args = trl.RewardConfig(**_common(tmp_path), max_length=96, center_rewards_coefficient=0.01)
    trainer = trl.RewardTrainer(model=model, args=args, train_dataset=to_trl_preference(rows), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, dict(batch))
        rewards = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
        chosen, rejected = rewards.chunk(2)  # TRL batches [chosen..., rejected...]
        ours = bradley_terry_loss(chosen, rejected).mean() + 0.01 * ((chosen + rejected) ** 2).mean()
    tokenizer.padding_side = "left"
    assert chosen.numel() == 4 and not torch.allclose(chosen, rejected)
    assert ours.item() == pytest.approx(theirs.item(), abs=TOL)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_equals_dpo_trainer(tmp_path, tiny_source, tokenizer, rows, loss_type):
    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config())
    tokenizer.padding_side = "right"
    args = trl.DPOConfig(**_common(tmp_path), max_length=96, beta=0.1, loss_type=[loss_type])
    trainer = trl.DPOTrainer(model=policy, args=args, train_dataset=to_trl_preference(rows), processing_class=tokenizer)
    _perturb_lora(trainer.model)  # after TRL took its reference (the initial adapter = the base model)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, dict(batch))
        ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]

        def logps(model):  # summed log pi(y|x) over completion tokens, (2B,)
            lp = sequence_logps(model(input_ids=ids, attention_mask=attn).logits[:, :-1], ids[:, 1:])  # (2B, L-1)
            return (lp * comp[:, 1:]).sum(1)

        pol = logps(trainer.model)
        with trainer.model.disable_adapter():
            ref = logps(trainer.model)
        if loss_type == "ipo":  # TRL's IPO uses per-token averages (see dpo_loss docstring)
            n = comp.sum(1).clamp(min=1)
            pol, ref = pol / n, ref / n
        pc, pr = pol.chunk(2)
        rc, rr = ref.chunk(2)
        ours = dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type=loss_type)[0].mean()
    tokenizer.padding_side = "left"
    assert not torch.allclose(pol, ref)  # policy differs from reference: the test can fail
    assert ours.item() == pytest.approx(theirs.item(), abs=TOL)


@pytest.mark.parametrize("loss_type, kl_weight", [("grpo", False), ("grpo", True), ("dr_grpo", True)])
def test_grpo_equals_grpo_trainer(tmp_path, tiny_source, tokenizer, rows, loss_type, kl_weight):
    torch.manual_seed(0)
    policy = _perturb_lora(get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config()))
    G, T = 4, 10
    args = trl.GRPOConfig(**{**_common(tmp_path), "per_device_train_batch_size": 8}, num_generations=G,
                          max_completion_length=T, beta=0.04, epsilon=0.2, loss_type=loss_type, temperature=0.7,
                          use_bias_correction_kl=kl_weight)
    prompts = [r["prompt"] for r in rows[:2]]
    trainer = trl.GRPOTrainer(model=policy, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                              args=args, train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                              processing_class=tokenizer)
    # a hand-built batch: 2 prompts x G completions of random tokens with different lengths
    g = torch.Generator().manual_seed(1)
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts for _ in range(G)]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    completion_ids = torch.randint(100, 5000, (2 * G, T), generator=g)
    lengths = torch.tensor([10, 3, 7, 10, 1, 5, 9, 4])
    completion_mask = (torch.arange(T)[None] < lengths[:, None]).long()
    input_ids = torch.cat([enc["input_ids"], completion_ids], 1)
    attention_mask = torch.cat([enc["attention_mask"], completion_mask], 1)
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -T - 1:-1]  # (B, T, V)
        logps = sequence_logps(logits, completion_ids, temperature=0.7)  # (B, T)
    old = logps + 0.3 * torch.randn(logps.shape, generator=g)  # ratios beyond 1 +- epsilon: clipping is exercised
    ref = logps + 0.5 * torch.randn(logps.shape, generator=g)
    advantages = grpo_advantages(torch.randn(2 * G, generator=g), G)
    inputs = {"prompt_ids": enc["input_ids"], "prompt_mask": enc["attention_mask"], "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": advantages, "old_per_token_logps": old,
              "ref_per_token_logps": ref, "num_items_in_batch": completion_mask.sum()}
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, inputs)
        ours = grpo_loss(logps, old, ref, advantages, completion_mask.float(), beta=0.04, epsilon=0.2,
                         loss_type=loss_type, max_completion_length=T, kl_importance_weight=kl_weight)
    clipped = ((torch.exp(logps - old) - 1).abs() > 0.2)[completion_mask.bool()].float().mean()
    assert clipped > 0.2
    assert ours.item() == pytest.approx(theirs.item(), abs=TOL)
