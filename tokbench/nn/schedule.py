"""The warm-up + cosine learning-rate schedule both in-house trainings use (tokenizer: `tokenizer_training.trainer`;
generator: `gen.training`). timm's `CosineLRScheduler` was checked and is not used: its warm-up starts at
`warmup_lr_init` at step 0 (ours reaches peak·1/warmup there) and its cosine differs from this one in the last bit at
some steps, so it would change every committed training run (tests/test_schedule.py compares)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int, peak: float = 1.0, floor: float = 0.0) -> float:
    """Linear warm-up to `peak` over `warmup` steps (peak·(step+1)/warmup), then cosine from `peak` to `floor` at
    step `total`, `floor` after it. peak=1 gives a multiplier for `LambdaLR`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    t = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
