"""Trainers, one module per method; each writes a run directory through ``RunContext``."""

from .dpo import train_dpo
from .grpo import train_grpo
from .ppo import train_ppo
from .reward import evaluate_reward_model, train_reward_model

__all__ = ["evaluate_reward_model", "train_dpo", "train_grpo", "train_ppo", "train_reward_model"]
