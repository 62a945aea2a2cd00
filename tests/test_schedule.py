"""The one warm-up + cosine schedule: bit-identical to the two copies it replaced (so resumed and committed trainings
do not move), and why timm's scheduler was not taken (it gives other per-step values)."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench.gen.training import TrainConfig, lr_at
from tokbench.nn.schedule import warmup_cosine

CONFIGS = [(0, 100, 1e-3, 0.0), (10, 100, 3e-4, 1e-5), (5, 37, 1.0, 0.1), (1, 2, 2e-4, 2e-6), (7, 7, 1e-4, 0.0)]


def _old_generator(step, warmup, total, lr, min_lr):  # gen/training.py lr_at before issue 16
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * prog))


def _old_tokenizer(step, warmup, total, min_ratio):  # tokenizer_training/trainer.py lr_lambda before issue 16
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


@pytest.mark.parametrize("warmup,total,lr,floor", CONFIGS)
def test_same_values_as_the_two_copies_it_replaced(warmup, total, lr, floor):
    tc = TrainConfig(lr=lr, min_lr=floor, warmup_steps=warmup)
    for step in range(total + 3):
        assert lr_at(step, total, tc) == _old_generator(step, warmup, total, lr, floor)  # exact, not approx
        ratio = floor / lr
        assert warmup_cosine(step, warmup, total, 1.0, ratio) == _old_tokenizer(step, warmup, total, ratio)
    if warmup < total:
        assert warmup_cosine(total, warmup, total, lr, floor) == floor


def test_timm_cosine_scheduler_gives_other_values():
    timm_scheduler = pytest.importorskip("timm.scheduler")
    warmup, total, lr, floor = 10, 100, 3e-4, 1e-5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    s = timm_scheduler.CosineLRScheduler(opt, t_initial=total - warmup, lr_min=floor, warmup_t=warmup,
                                         warmup_lr_init=lr / warmup, warmup_prefix=True, t_in_epochs=False)
    diffs = [step for step in range(total) if s._get_lr(step)[0] != warmup_cosine(step, warmup, total, lr, floor)]
    assert diffs  # if timm ever matches exactly, tokbench.nn.schedule can become a thin wrapper over it
