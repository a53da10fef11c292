"""Probes on frozen, pooled features: linear or MLP heads on one layer or a learned mix of layers.

The MARBLE protocol: a linear layer, or an MLP with one hidden layer of 512 units, ReLU and dropout 0.2,
trained with Adam on the training split; the epoch with the best validation score (the task's primary
metric, ties broken by the validation loss) is kept and scored on the test split; training stops after
``patience`` epochs without a better validation score. Features are standardised with training
statistics. Repeating over seeds gives a mean and standard deviation.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from muqkit.eval import metrics
from muqkit.eval.tasks import PRIMARY_METRIC

HEADS: tuple[str, ...] = ("linear", "mlp")


@dataclass(frozen=True)
class ProbeConfig:
    """Training settings of a probe.

    Attributes:
        head: ``"linear"`` or ``"mlp"``.
        hidden: MLP hidden units.
        dropout: MLP dropout.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_size: training batch size.
        max_epochs: upper bound on epochs.
        patience: epochs without validation improvement before stopping.
    """

    head: str = "mlp"
    hidden: int = 512
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 20

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.head not in HEADS:
            raise ValueError(f"{name}.head must be one of {HEADS}, got {self.head!r}")
        if self.hidden < 1 or not 0 <= self.dropout < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError(f"{name}: hidden >= 1, dropout in [0, 1), lr > 0 and batch_size >= 1 required")
        if self.weight_decay < 0:
            raise ValueError(f"{name}.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError(f"{name}: max_epochs and patience must be >= 1")


@dataclass(frozen=True)
class ProbeResult:
    """One trained probe.

    Attributes:
        val: primary metric on the validation split at the kept epoch.
        test: test metrics (primary first).
        epochs: epochs trained.
        best_epoch: the kept epoch (1-based).
        layer_weights: softmax weights of a weighted-sum probe (``None`` otherwise).
    """

    val: float
    test: dict[str, float]
    epochs: int
    best_epoch: int
    layer_weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SeedSummary:
    """A probe repeated over seeds.

    Attributes:
        mean: mean of each test metric.
        std: standard deviation (population, ``ddof=0``) of each test metric.
        val_mean: mean validation score.
        runs: the individual results.
    """

    mean: dict[str, float]
    std: dict[str, float]
    val_mean: float
    runs: tuple[ProbeResult, ...] = field(repr=False)

    @classmethod
    def of(cls, runs: Sequence[ProbeResult], *, ignore_nan_val: bool = True) -> SeedSummary:
        """Mean and std of the runs' test metrics, mean of their validation scores (NaN ones left out unless
        ``ignore_nan_val`` is false)."""
        keys = list(runs[0].test)
        mean = {k: float(np.mean([r.test[k] for r in runs])) for k in keys}
        std = {k: float(np.std([r.test[k] for r in runs])) for k in keys}
        val = (np.nanmean if ignore_nan_val else np.mean)([r.val for r in runs])
        return cls(mean, std, float(val), tuple(runs))


class ProbeHead(nn.Module):
    """Optional softmax mix over layers, then a linear or MLP head."""

    def __init__(self, num_layers: int, dim: int, num_outputs: int, config: ProbeConfig) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if num_layers > 1 else None
        if config.head == "linear":
            self.net: nn.Module = nn.Linear(dim, num_outputs)
        else:
            self.net = nn.Sequential(
                nn.Linear(dim, config.hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, num_outputs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, layers, dim)
        if self.layer_logits is not None:
            x = torch.einsum("bld,l->bd", x, self.layer_logits.softmax(0))
        else:
            x = x[:, 0]
        return self.net(x)  # (batch, outputs)


def evaluate(kind: str, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """Test metrics of raw head outputs (logits, or standardised-back predictions for regression)."""
    if kind == "key":
        pred = outputs.argmax(1)
        return {
            "weighted_score": metrics.key_weighted_score_indices(targets, pred),
            "accuracy": metrics.accuracy(targets, pred),
        }
    if kind == "multiclass":
        return {"accuracy": metrics.accuracy(targets, outputs.argmax(1))}
    if kind == "multilabel":
        return {
            "roc_auc": metrics.roc_auc_macro(targets, outputs),
            "ap": metrics.average_precision_macro(targets, outputs),
        }
    return {"r2": metrics.r2(targets, outputs)}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Probes are tiny: one thread avoids oversubscription, which costs 10x on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_probe(
    kind: str,
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    num_outputs: int,
    *,
    config: ProbeConfig,
    seed: int = 0,
) -> ProbeResult:
    """Train one probe and score it.

    Args:
        kind: task kind (``key``, ``multiclass``, ``multilabel``, ``regression``).
        x: split -> (items, layers, dim) features; more than one layer means a learned weighted sum.
        y: split -> targets as :class:`~muqkit.eval.tasks.TaskData` encodes them.
        num_outputs: classes, tags or regression outputs.
        config: training settings.
        seed: seed of initialisation, shuffling and dropout.
    """
    with torch_threads(1):
        return _train_probe(kind, x, y, num_outputs, config=config, seed=seed)


def _train_probe(
    kind: str,
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    num_outputs: int,
    *,
    config: ProbeConfig,
    seed: int,
) -> ProbeResult:
    for split in ("train", "valid", "test"):
        if x[split].ndim != 3 or len(x[split]) != len(y[split]) or len(x[split]) == 0:
            raise ValueError(f"{split}: need (items, layers, dim) features matching the targets, non-empty")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean = x["train"].mean(0, keepdims=True)
    std = x["train"].std(0, keepdims=True) + 1e-5
    xs = {s: torch.from_numpy(((v - mean) / std).astype(np.float32)) for s, v in x.items()}
    y_mean = y_std = None
    if kind == "regression":
        y_mean = y["train"].mean(0, keepdims=True)
        y_std = y["train"].std(0, keepdims=True) + 1e-8
        train_y = torch.from_numpy(((y["train"] - y_mean) / y_std).astype(np.float32))
    elif kind == "multilabel":
        train_y = torch.from_numpy(y["train"].astype(np.float32))
    else:
        train_y = torch.from_numpy(y["train"]).long()
    loss_fn: nn.Module = (
        nn.MSELoss()
        if kind == "regression"
        else nn.BCEWithLogitsLoss()
        if kind == "multilabel"
        else nn.CrossEntropyLoss()
    )
    model = ProbeHead(xs["train"].shape[1], xs["train"].shape[2], num_outputs, config)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def predict(split: str) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = model(xs[split]).numpy()
        if y_mean is not None:
            out = out * y_std + y_mean
        return out

    def val_loss(outputs: np.ndarray) -> float:
        target = y["valid"]
        if y_mean is not None:
            outputs, target = (outputs - y_mean) / y_std, (target - y_mean) / y_std
        t = torch.from_numpy(target).long() if kind in ("key", "multiclass") else torch.from_numpy(target).float()
        return float(loss_fn(torch.from_numpy(outputs).float(), t))

    primary = PRIMARY_METRIC[kind]
    # the kept epoch maximises the validation metric; ties (frequent with accuracy) go to the lower loss
    best, best_val, best_epoch, best_state, epoch = (-np.inf, -np.inf), -np.inf, 0, copy.deepcopy(model.state_dict()), 0
    n = len(train_y)
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            loss = loss_fn(model(xs["train"][idx]), train_y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        outputs = predict("valid")
        val = _safe_primary(kind, y["valid"], outputs, primary)
        candidate = (round(float(np.nan_to_num(val, nan=-np.inf)), 9), -val_loss(outputs))
        if candidate > best:
            best, best_val, best_epoch, best_state = candidate, val, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    test = evaluate(kind, y["test"], predict("test"))
    weights = None
    if model.layer_logits is not None:
        weights = tuple(float(w) for w in model.layer_logits.detach().softmax(0))
    return ProbeResult(float(best_val), test, epoch, best_epoch, weights)


def _safe_primary(kind: str, targets: np.ndarray, outputs: np.ndarray, primary: str) -> float:
    try:
        return evaluate(kind, targets, outputs)[primary]
    except ValueError:  # e.g. a validation split where no tag has both classes
        return float("nan")


def probe_over_seeds(
    kind: str,
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    num_outputs: int,
    *,
    config: ProbeConfig,
    seeds: Sequence[int] = (0, 1, 2),
) -> SeedSummary:
    """:func:`train_probe` once per seed; mean and std of the test metrics."""
    if not seeds:
        raise ValueError("need at least one seed")
    return SeedSummary.of([train_probe(kind, x, y, num_outputs, config=config, seed=s) for s in seeds])
