"""Compute precision: the names users give (``float32``, ``bfloat16``, ``int8``, ``auto``) and what the CPU can do.

``float32`` is the default everywhere, so that embeddings are the same on every machine. ``auto`` is an
opt-in that reads the CPU's features: bfloat16 only where the CPU computes it natively (AVX512-BF16 or
AMX-BF16), else int8 where the CPU has 8-bit dot-product instructions (VNNI) and the int8 backend is
installed, else float32. An explicit ``bfloat16`` on a CPU without native bfloat16 runs, emulated and
several times slower than float32, with a one-line warning.

The precision actually used is recorded in each embedding's provenance (``dtype``), so a resumed run with
another precision embeds again rather than mixing precisions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from muqkit.ssl.muq import MuQ

Precision = Literal["float32", "bfloat16", "int8"]
PrecisionOption = Literal["float32", "bfloat16", "int8", "auto"]
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "int8")
OPTIONS: tuple[str, ...] = (*PRECISIONS, "auto")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU offers for low-precision arithmetic.

    Attributes:
        model: the CPU's name (``/proc/cpuinfo``'s ``model name``; the machine type elsewhere).
        capability: PyTorch's vector code on this CPU (``torch.backends.cpu.get_cpu_capability()``:
            ``DEFAULT``, ``AVX2``, ``AVX512``, ...).
        flags: the CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read).
    """

    model: str
    capability: str
    flags: frozenset[str]

    @property
    def native_bfloat16(self) -> bool:
        """bfloat16 arithmetic in hardware (AVX512-BF16 or AMX-BF16); elsewhere PyTorch emulates it."""
        return any(flag in self.flags for flag in NATIVE_BF16_FLAGS)

    @property
    def int8_dot_product(self) -> bool:
        """8-bit dot products in hardware (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
        return any(flag in self.flags for flag in INT8_FLAGS)

    def describe(self) -> str:
        """One line: the model, PyTorch's vector code and the relevant flags."""
        have = [f for f in (*NATIVE_BF16_FLAGS, *INT8_FLAGS, "avx512f", "avx2") if f in self.flags]
        return f"{self.model}; PyTorch vector code {self.capability}; flags: {' '.join(have) or 'none relevant'}"


def read_cpu_features() -> CpuFeatures:
    """This machine's CPU features (tests replace this function to pretend another CPU)."""
    import platform

    model, flags = platform.processor() or platform.machine(), frozenset[str]()
    if os.path.exists("/proc/cpuinfo"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                for line in handle:
                    key, _, value = line.partition(":")
                    if key.strip() == "model name":
                        model = value.strip()
                    elif key.strip() == "flags":
                        flags = frozenset(value.split())
                        break
        except OSError:
            pass
    return CpuFeatures(model=model, capability=torch.backends.cpu.get_cpu_capability(), flags=flags)


def int8_available() -> bool:
    """Whether int8 (:mod:`muqkit.embed.int8`) can run here: torchao installed and a C++ compiler found."""
    from muqkit.embed.int8 import int8_problem

    return int8_problem() is None


def resolve_precision(option: str, *, device: str | torch.device = "cpu") -> Precision:
    """The precision to run for a user's ``--dtype``: ``auto`` resolved, an emulated bfloat16 warned about.

    Args:
        option: ``"float32"``, ``"bfloat16"``, ``"int8"`` or ``"auto"``.
        device: where the model runs; ``auto`` and the bfloat16 warning look at the CPU only on the CPU
            (``auto`` on a GPU is float32).

    Raises:
        ValueError: an unknown option, or ``int8`` off the CPU.
    """
    if option not in OPTIONS:
        raise ValueError(f"--dtype must be one of {', '.join(OPTIONS)}, got {option!r}")
    on_cpu = torch.device(device).type == "cpu"
    if option == "int8" and not on_cpu:
        raise ValueError(f"--dtype int8 runs on the CPU only, not --device {device}")
    if option == "int8":
        from muqkit.embed.int8 import int8_problem

        problem = int8_problem()
        if problem:
            raise ValueError(problem)
    if not on_cpu:
        return "float32" if option == "auto" else option  # type: ignore[return-value]
    if option == "auto":
        return auto_precision(read_cpu_features())
    if option == "bfloat16":
        features = read_cpu_features()
        if not features.native_bfloat16:
            log.warning(
                "--dtype bfloat16: this CPU has no native bfloat16 (no %s), so it is emulated and several times "
                "slower than float32; use --dtype float32, or auto",
                " or ".join(NATIVE_BF16_FLAGS),
            )
    return option  # type: ignore[return-value]


def auto_precision(features: CpuFeatures) -> Precision:
    """``auto`` on a CPU: bfloat16 where native, else int8 with VNNI (and the int8 backend installed), else
    float32. Never an emulated bfloat16."""
    if features.native_bfloat16:
        return "bfloat16"
    if features.int8_dot_product and int8_available():
        return "int8"
    return "float32"


def model_in_precision(
    muq: MuQ,
    precision: Precision,
    *,
    layers: Sequence[int],
    batch_size: int = 1,
    pad_samples: int | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """The model ``muqkit embed`` runs for a resolved precision (:func:`resolve_precision`): in ``int8`` the
    quantised encoder of :func:`muqkit.embed.int8.quantize_muq` (an :class:`~muqkit.embed.int8.Int8MuQ`, run
    through its ``encode_batch``), else the model moved to ``device`` and cast to float32 or bfloat16, in eval
    mode. The probes (``muqkit probe --dtype``) and the MuQ indexes run their models through here too.

    Args:
        muq: a float32 MuQ (an exported graph passes through unchanged in float32).
        precision: ``"float32"``, ``"bfloat16"`` or ``"int8"``.
        layers: the hidden states that will be asked for (int8 computes only these).
        batch_size: int8 pads every batch to this many items (one compiled shape).
        pad_samples: int8 pads lengths to a multiple of this (default: 30 s).
        device: where a float32 or bfloat16 model runs.
    """
    if precision == "int8":
        from muqkit.embed.int8 import quantize_muq

        return quantize_muq(muq, layers=layers, batch_size=batch_size, pad_samples=pad_samples)
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return muq.to(device=torch.device(device), dtype=getattr(torch, precision)).eval()


__all__ = [
    "OPTIONS",
    "PRECISIONS",
    "CpuFeatures",
    "Precision",
    "PrecisionOption",
    "auto_precision",
    "int8_available",
    "model_in_precision",
    "read_cpu_features",
    "resolve_precision",
]
