"""The training objective equals the official one: one recorded step of the official MuQModel and
of its Mel-RVQ (../shared/parity/objective_small), replayed by MuQPretrainer and RVQTrainingTask."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from muqkit.hub.official.objective import check_objective, replay_rvq_step
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def fixture(parity_dir):
    folder = parity_dir / "objective_small"
    if not folder.is_dir():
        pytest.skip(f"no objective fixture at {folder}")
    return folder


def test_every_quantity_within_tolerance(fixture):
    report = check_objective(fixture)
    assert report.ok, report.format()
    names = {row.name for row in report.rows}
    assert {"loss", "targets", "accuracy", "rvq.loss", "rvq.codes", "rvq.recon_l1"} <= names
    grads = [row for row in report.rows if row.name.startswith(("grad.", "rvq.grad."))]
    assert len(grads) >= 10
    # the noise-floor allowance is the exception, never the rule: most gradients meet 1e-4 outright
    assert sum(row.tolerance == 1e-4 for row in grads) >= len(grads) - 2
    loss = next(row for row in report.rows if row.name == "loss")
    assert loss.difference < 1e-6


def test_float64_step_equals_the_official_float64_step(fixture):
    """With expected64.safetensors, every float64 quantity is a row at 1e-9 of max, and they agree to
    about 1e-13: muqkit's float64 replay is float64 end to end (mel frontend included)."""
    from safetensors.torch import load_file

    if not (fixture / "expected64.safetensors").is_file():
        pytest.skip("this fixture has no official float64 step")
    official64 = load_file(str(fixture / "expected64.safetensors"))
    report = check_objective(fixture)
    rows = {row.name[len("fp64 "):]: row for row in report.rows if row.name.startswith("fp64 ")}
    assert set(rows) == {"loss", "accuracy", "rvq.codes"} | {k for k in official64 if k not in ("accuracy", "loss")}
    for name, row in rows.items():
        assert row.ok, row
        if name != "rvq.codes":
            assert row.tolerance == 1e-9 and row.difference < 1e-12, row


def test_fixture_without_a_float64_step(fixture, tmp_path):
    """An older fixture (no expected64) is still checked: float32 rows only, against muqkit's float64."""
    import shutil

    copy = tmp_path / "objective"
    shutil.copytree(fixture, copy, ignore=shutil.ignore_patterns("expected64.safetensors"))
    report = check_objective(copy)
    assert report.ok, report.format()
    assert not any(row.name.startswith("fp64 ") for row in report.rows)


def test_rvq_gradients_need_the_official_weight_norm(fixture):
    """Training fused weights gives other gradients: with weight norm off, weight_v's gradient differs."""
    from safetensors.torch import load_file

    expected = load_file(str(fixture / "expected.safetensors"))
    name = "model.rvq.quantizers.0.in_proj.weight_v"
    ours = replay_rvq_step(fixture)["grads"][name]
    reference = expected[f"rvq.grad.{name}"]
    assert float((ours - reference).abs().max() / reference.abs().max()) < 1e-4

    from muqkit.tokenizer import MelRVQ
    from muqkit.tokenizer.base import Features
    from muqkit.tokenizer.training import RVQTrainingTask

    tok = MelRVQ.from_pretrained(fixture / "model")
    task = RVQTrainingTask(tok, weight_norm=False)
    tok.train()
    inputs = load_file(str(fixture / "inputs.safetensors"))
    values = inputs["rvq_input"].transpose(1, 2)
    metrics, _ = task.objective(Features(values=values, lengths=torch.full((values.shape[0],), values.shape[1])))
    metrics["loss"].backward()
    fused = tok.rvq.stages[0].in_proj.weight.grad.unsqueeze(-1)
    assert float((fused - reference).abs().max() / reference.abs().max()) > 1e-2


def test_script_prints_every_quantity_and_exits_by_verdict(fixture, tmp_path):
    script = REPO_ROOT / "bench" / "parity_objective.py"
    # A float64 tolerance of 0 (the first convolution's gradient differs in its last bits): the table
    # is printed, the summary names the misses, exit 1.
    strict = subprocess.run([sys.executable, str(script), str(fixture), "--float64-tolerance", "0"],
                            capture_output=True, text=True)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    lines = strict.stdout.strip().splitlines()
    assert lines[-1].startswith("objective parity FAIL (") and "fp64 grad.model.conv.conv.0.conv1.weight" in lines[-1]
    assert any(line.startswith("grad.model.linear.weight") and " ok " in line for line in lines)
    assert any(line.startswith("rvq.grad.model.rvq.quantizers.0.in_proj.weight_g") for line in lines)
    default = subprocess.run([sys.executable, str(script), str(fixture)], capture_output=True, text=True)
    assert default.returncode == 0 and default.stdout.strip().splitlines()[-1].startswith("objective parity PASS")
    assert any(line.startswith("fp64 grad.model.conv.conv.0.conv1.weight") and line.split()[-1] == "ok"
               for line in default.stdout.splitlines())
    missing = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 2 and "not an objective-parity fixture" in missing.stderr
