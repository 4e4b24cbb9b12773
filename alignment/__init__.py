"""Alignment Lab library: data -> trainers -> checkpoints -> generation -> evaluation -> report.

- ``alignment.data``: preference datasets (built-in, files, hub), length fitting, split, statistics
- ``alignment.models``: model resolution (hub / local / embedded GGUF), tokenizer, LoRA
- ``alignment.losses``: the objectives as pure functions (Bradley-Terry, DPO/IPO, PPO, GAE, GRPO)
- ``alignment.config``: one validated config dataclass per method (classroom preset)
- ``alignment.trainers``: reward model, DPO, GRPO (TRL) and PPO (ours), each writing a run directory
- ``alignment.generation``: batched generation, reward scoring, log-probs
- ``alignment.evaluation``: base vs aligned models side by side
- ``alignment.report``: the three JSON report files and plots

This package never imports gradio.
"""
