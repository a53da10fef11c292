"""Optimisers that torch does not ship.

:class:`FairseqAdam` is Adam as fairseq implements it (``fairseq/optim/adam.py``), the optimiser of the
official MuQ pretraining recipe. It differs from ``torch.optim.AdamW`` in one place: epsilon is added to
the square root of the *uncorrected* second moment, and the bias corrections scale the step,

    p <- p - lr * wd * p
    p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

where AdamW divides by ``sqrt(v) / sqrt(1 - b2^t) + eps``; that is AdamW with an epsilon of
``eps / sqrt(1 - b2^t)``, larger early in training (about 7x at step 1 with b2 = 0.98). Weight decay is
decoupled (as in AdamW), applied to every parameter of a group before the Adam step. fairseq's
``amsgrad`` and ``adaptive_adam`` variants (off in the recipe) are not implemented.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class FairseqAdam(torch.optim.Optimizer):
    """Adam with decoupled weight decay, epsilon outside the bias correction (see the module docstring).

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: moment coefficients.
        eps: added to ``sqrt(v)`` before the bias correction.
        weight_decay: decoupled decay, ``p -= lr * weight_decay * p`` each step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr > 0 or not eps > 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"FairseqAdam: invalid lr {lr}, eps {eps}, weight_decay {weight_decay} or betas {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("FairseqAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grad = p.grad
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                if group["weight_decay"] != 0:
                    p.add_(p, alpha=-group["weight_decay"] * group["lr"])
                p.addcdiv_(exp_avg, denominator, value=-step_size)
        return loss


__all__ = ["FairseqAdam"]
