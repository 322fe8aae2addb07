"""Learning-rate schedule: linear warm-up, then cosine decay, evaluated per optimizer step."""

from __future__ import annotations

import math


def learning_rate_at(step: int, total_steps: int, base_lr: float, min_lr: float = 0.0, warmup_steps: int = 0) -> float:
    """Return the learning rate of optimizer step ``step`` (0-based) out of ``total_steps``.

    During ``warmup_steps`` it rises linearly from ``base_lr / warmup_steps`` to ``base_lr``;
    afterwards it follows half a cosine from ``base_lr`` down to ``min_lr`` at the last step.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
