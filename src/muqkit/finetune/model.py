"""A MuQ backbone with a task head: clip-level (pooled) or frame-level (per 25 Hz frame).

:class:`TaskHead` mixes the backbone's hidden states with learned softmax weights and applies a linear or MLP
head, to the mean over valid frames (clip tasks) or to every frame (frame tasks). :class:`TaskModel` holds a
backbone (a MuQ, or a MuQ wrapped with LoRA adapters) and a head; the head and its description
(:class:`HeadSpec`) are saved beside the backbone so that :mod:`muqkit.finetune.predict` can run them on files.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muqkit.audio.tensors import lengths_to_mask

CLIP_KINDS = ("key", "multiclass", "multilabel", "regression")
FRAME_KINDS = ("events", "classes")


@dataclass(frozen=True)
class HeadSpec:
    """What a saved head predicts.

    Attributes:
        task: task name (``key``, ``chord``, ...).
        kind: a clip kind (``key``, ``multiclass``, ``multilabel``, ``regression``) or a frame kind
            (``events``, ``classes``).
        num_outputs: outputs (per clip or per frame).
        num_layers: hidden states mixed.
        dim: their width.
        head: ``linear`` or ``mlp``.
        hidden: MLP hidden units.
        classes: class or tag names (empty for regression and events).
        target_mean: regression targets' training mean (empty otherwise).
        target_std: their standard deviation.
        threshold: peak-picking threshold of event tasks (chosen on validation).
    """

    task: str
    kind: str
    num_outputs: int
    num_layers: int
    dim: int
    head: str = "linear"
    hidden: int = 512
    classes: tuple[str, ...] = ()
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in (*CLIP_KINDS, *FRAME_KINDS):
            raise ValueError(f"HeadSpec.kind must be one of {(*CLIP_KINDS, *FRAME_KINDS)}, got {self.kind!r}")
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"HeadSpec.head must be 'linear' or 'mlp', got {self.head!r}")

    @property
    def frames(self) -> bool:
        return self.kind in FRAME_KINDS

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadSpec:
        d = dict(d)
        for key in ("classes", "target_mean", "target_std"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


class TaskHead(nn.Module):
    """Softmax-weighted sum of hidden states, standardised per dimension (running statistics, as the probes
    standardise with training statistics), then a linear or MLP head (per clip or per frame).

    Args:
        spec: the head's description.
        dropout: MLP dropout.
    """

    def __init__(self, spec: HeadSpec, dropout: float = 0.2) -> None:
        super().__init__()
        self.spec = spec
        self.layer_logits = nn.Parameter(torch.zeros(spec.num_layers))
        self.norm = nn.BatchNorm1d(spec.dim, affine=False)
        if spec.head == "linear":
            self.net: nn.Module = nn.Linear(spec.dim, spec.num_outputs)
        else:
            self.net = nn.Sequential(
                nn.Linear(spec.dim, spec.hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(spec.hidden, spec.num_outputs),
            )

    def forward(self, hidden_states: tuple[torch.Tensor, ...], lengths: torch.Tensor) -> torch.Tensor:
        """hidden_states: each (batch, frames, dim); lengths (batch,) valid frames.

        Returns:
            (batch, outputs) for clip tasks, (batch, frames, outputs) for frame tasks.
        """
        states = torch.stack([h.float() for h in hidden_states], dim=-1)  # (batch, frames, dim, layers)
        x = states @ self.layer_logits.softmax(0)  # (batch, frames, dim)
        mask = lengths_to_mask(lengths, x.shape[1])  # (batch, frames)
        if not self.spec.frames:
            w = mask.float()
            x = (x * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1)  # (batch, dim)
            return self.net(self.norm(x) if x.shape[0] > 1 or not self.training else x)
        normed = torch.zeros_like(x)
        normed[mask] = self.norm(x[mask])  # statistics of the valid frames only
        return self.net(normed)


class TaskModel(nn.Module):
    """A backbone (MuQ, possibly with LoRA adapters) and a :class:`TaskHead`."""

    def __init__(self, backbone: nn.Module, head: TaskHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs (batch, samples) at 24 kHz, lengths (batch,) samples -> (head outputs, frame lengths)."""
        out = self.backbone(wavs, lengths=lengths, output_hidden_states=True)
        return self.head(out.hidden_states, out.lengths), out.lengths


def save_head(head: TaskHead, folder: str | os.PathLike[str]) -> None:
    """Write ``head.safetensors`` and ``head.json`` into ``folder`` (atomically)."""
    from safetensors.torch import save_file

    from muqkit.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "head.safetensors", suffix=".safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(tmp))
    with atomic_path(folder / "head.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(asdict(head.spec), indent=2) + "\n")


def load_head(folder: str | os.PathLike[str]) -> TaskHead:
    """Read a head written by :func:`save_head`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "head.json").is_file():
        raise FileNotFoundError(f"{folder}: no head.json (not a folder written by `muqkit finetune`)")
    spec = HeadSpec.from_dict(json.loads((folder / "head.json").read_text()))
    head = TaskHead(spec)
    head.load_state_dict(load_file(str(folder / "head.safetensors")))
    return head.eval()


__all__ = ["HeadSpec", "TaskHead", "TaskModel", "load_head", "save_head"]
