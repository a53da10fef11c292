"""FairseqAdam is fairseq's Adam; the schedules and parameter groups of OptimizerConfig."""

from __future__ import annotations

import math

import pytest
import torch

from muqkit.train.lightning import OptimizerConfig
from muqkit.train.optim import FairseqAdam


def _steps(optimizer_cls, grads, **kwargs):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = optimizer_cls([p], **kwargs)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach().clone()


def test_matches_the_update_rule_written_out():
    """Three steps against the rule computed here by hand, in float64."""
    grads = [torch.tensor([0.3, -0.1, 2.0], dtype=torch.float64) * (k + 1) for k in range(3)]
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.98), 1e-6, 0.1
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * wd * p
        p = p - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + eps)
    ours = _steps(FairseqAdam, grads, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    assert torch.allclose(ours, p, rtol=0, atol=1e-15)


def test_is_adamw_with_an_epsilon_scaled_by_the_bias_correction():
    """One step equals torch's AdamW with eps / sqrt(1 - b2); with a tiny eps the two agree for many steps."""
    grad = [torch.tensor([1e-4, -3e-5, 2e-6], dtype=torch.float64)]
    b2, eps = 0.98, 1e-6
    ours = _steps(FairseqAdam, grad, lr=0.1, betas=(0.9, b2), eps=eps, weight_decay=0.01)
    theirs = _steps(torch.optim.AdamW, grad, lr=0.1, betas=(0.9, b2), eps=eps / math.sqrt(1 - b2), weight_decay=0.01)
    plain = _steps(torch.optim.AdamW, grad, lr=0.1, betas=(0.9, b2), eps=eps, weight_decay=0.01)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-15)
    assert (ours - plain).abs().max() > 1e-4  # with gradients near eps, where eps sits matters


def test_schedules_and_undecayed_one_dimensional_parameters():
    linear = OptimizerConfig(name="fairseq_adam", lr=1.0, warmup_steps=8, decay="linear", total_steps=100)
    assert [linear.factor(s) for s in (0, 7, 8, 54, 100, 150)] == pytest.approx([1 / 8, 1.0, 1.0, 0.5, 0.0, 0.0])
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    groups = OptimizerConfig(weight_decay=0.1, decay_1d=False).parameter_groups(model)
    assert [p.dim() for p in groups[0]["params"]] == [2] and groups[1]["weight_decay"] == 0.0
    assert len(groups[1]["params"]) == 3  # the bias, the norm's weight and bias
    optimizer, schedule = OptimizerConfig(name="fairseq_adam", weight_decay=0.1, decay_1d=False).build(model)
    assert isinstance(optimizer, FairseqAdam) and optimizer.param_groups[1]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="name must be one of"):
        OptimizerConfig(name="sgd")
