"""Shared by the export tests: exporting an official parity fixture's model once per module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from muqkit.cli.main import main

PARITY = Path(__file__).resolve().parents[2] / ".." / "shared" / "parity"


@pytest.fixture(scope="module")
def export_parity(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``export_parity(fixture, model, *flags)``: ``muqkit export onnx`` on ``../shared/parity/FIXTURE/MODEL``.

    Skips the test when the fixture is absent; returns the written file or folder.
    """

    def export(fixture: str, model: str, *flags: str) -> Path:
        folder = PARITY / fixture / model
        if not (folder / "config.json").is_file():
            pytest.skip(f"official parity fixture not found at ../shared/parity/{fixture} ({folder})")
        out = tmp_path_factory.mktemp("onnx") / ("muq.onnx" if model == "model" else model)
        assert main(["export", "onnx", *flags, "--model", str(folder), "--out", str(out)]) == 0
        return out

    return export
