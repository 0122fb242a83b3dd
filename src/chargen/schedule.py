"""The optimiser and the learning-rate schedule: linear warmup, then cosine, wsd or constant."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

# Warmup ends after warmup_steps or this share of the budget, whichever comes first: on a slow
# machine a 2-minute run made ~150 steps and never reached its peak learning rate.
WARMUP_SHARE = 0.05
# schedule wsd (warmup, stable, decay): the learning rate decays over this last share only.
DECAY_SHARE = 0.2


def lr_factor(progress: float, step: int, config: TrainConfig, time_used: float = 0.0,
              decay_from: float | None = None) -> float:
    """Linear warmup over warmup_steps (or WARMUP_SHARE of a time budget, if sooner: `time_used`
    is the share used), then cosine from 1 down to min_lr_ratio as training progress (a
    fraction of the step or time budget) goes from 0 to 1. Under wsd the decay starts at
    `decay_from` when a plateau brought it forward (decay_starts), else at 1 - DECAY_SHARE."""
    warmup = 1.0
    if config.warmup_steps:
        warmup = min(1.0, max((step + 1) / config.warmup_steps, time_used / WARMUP_SHARE))
    if config.schedule == "constant":
        return warmup
    progress = min(max(progress, 0.0), 1.0)
    if config.schedule == "wsd":  # stable at the peak, then the cosine over the last share
        start = 1 - DECAY_SHARE if decay_from is None else decay_from
        progress = min(max(0.0, progress - start) / DECAY_SHARE, 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return warmup * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def decay_starts(progress: float, best_progress: float, config: TrainConfig) -> bool:
    """Under wsd, whether to start the decay now, before the last DECAY_SHARE: the best
    validation loss is `patience` of the budget old. A run that memorises at the peak rate
    only gets worse from there; ending it early lost nothing where measured (Alice and the
    Chinese corpus at 60 minutes: the same best in 26-28 minutes, RESULTS.md)."""
    return (config.schedule == "wsd" and config.patience > 0
            and progress - best_progress >= config.patience and progress < 1 - DECAY_SHARE)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # Decay the matrices only; biases and the (small) embedding stay undecayed.
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2 and "embedding" not in n]
    rest = [p for n, p in trainable if not (p.dim() >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    optimizer = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[config.optimizer]
    if config.optimizer == "adam":
        groups[0]["weight_decay"] = 0.0
    return optimizer(groups, lr=config.lr)
