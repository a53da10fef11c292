"""Precision names, the CPU feature reader and ``auto`` (on pretend CPUs: the reader is replaced)."""

from __future__ import annotations

import logging

import pytest

from muqkit.embed import precision
from muqkit.embed.precision import CpuFeatures, auto_precision, read_cpu_features, resolve_precision

AVX2 = CpuFeatures("an AVX2 CPU", "AVX2", frozenset({"avx2", "fma"}))
VNNI = CpuFeatures("a VNNI CPU", "AVX512", frozenset({"avx2", "avx512f", "avx512_vnni"}))
BF16 = CpuFeatures("a BF16 CPU", "AVX512", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
AMX = CpuFeatures("an AMX CPU", "AVX512", frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"}))


def pretend(monkeypatch: pytest.MonkeyPatch, features: CpuFeatures, *, int8: bool = True) -> None:
    monkeypatch.setattr(precision, "read_cpu_features", lambda: features)
    monkeypatch.setattr(precision, "int8_available", lambda: int8)


def test_this_cpu_is_read():
    features = read_cpu_features()
    import torch

    assert features.capability == torch.backends.cpu.get_cpu_capability()
    assert features.model
    line = features.describe()
    assert features.capability in line and features.model in line


@pytest.mark.parametrize(
    ("features", "int8", "expected"),
    [
        (AVX2, True, "float32"),  # no VNNI, no native bfloat16
        (VNNI, True, "int8"),
        (VNNI, False, "float32"),  # VNNI but the int8 backend is not installed
        (BF16, True, "bfloat16"),
        (AMX, True, "bfloat16"),
        (AMX, False, "bfloat16"),
    ],
)
def test_auto_picks_native_bfloat16_then_int8_then_float32(monkeypatch, features, int8, expected):
    pretend(monkeypatch, features, int8=int8)
    assert auto_precision(features) == expected
    assert resolve_precision("auto") == expected


@pytest.mark.parametrize("features", [AVX2, VNNI, BF16, AMX])
def test_auto_never_picks_emulated_bfloat16(monkeypatch, features):
    pretend(monkeypatch, features)
    if resolve_precision("auto") == "bfloat16":
        assert features.native_bfloat16


def test_bfloat16_without_native_support_warns_once(monkeypatch, caplog):
    pretend(monkeypatch, VNNI)
    with caplog.at_level(logging.WARNING, logger="muqkit.embed.precision"):
        assert resolve_precision("bfloat16") == "bfloat16"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "emulated" in lines[0] and "\n" not in lines[0]


@pytest.mark.parametrize("features", [BF16, AMX])
def test_native_bfloat16_does_not_warn(monkeypatch, caplog, features):
    pretend(monkeypatch, features)
    with caplog.at_level(logging.WARNING, logger="muqkit.embed.precision"):
        resolve_precision("bfloat16")
        resolve_precision("float32")
    assert not caplog.records


def test_off_the_cpu(monkeypatch):
    pretend(monkeypatch, AVX2)
    assert resolve_precision("auto", device="cuda") == "float32"
    assert resolve_precision("bfloat16", device="cuda") == "bfloat16"
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        resolve_precision("int8", device="cuda")


def test_unknown_precision_names_the_option():
    with pytest.raises(ValueError, match="--dtype must be one of float32, bfloat16, int8, auto"):
        resolve_precision("float16")
