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
    grads = [row for row in report.rows if "grad." in row.name]
    assert len(grads) >= 10
    # the noise-floor allowance is the exception, never the rule: most gradients meet 1e-4 outright
    assert sum(row.tolerance == 1e-4 for row in grads) >= len(grads) - 2
    loss = next(row for row in report.rows if row.name == "loss")
    assert loss.difference < 1e-6


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
    # A loss tolerance no float32 run meets: the table is printed, the summary names the miss, exit 1.
    strict = subprocess.run([sys.executable, str(script), str(fixture), "--loss-tolerance", "1e-12"],
                            capture_output=True, text=True)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    lines = strict.stdout.strip().splitlines()
    assert lines[-1].startswith("objective parity FAIL (loss")
    assert any(line.startswith("grad.model.linear.weight") and " ok " in line for line in lines)
    assert any(line.startswith("rvq.grad.model.rvq.quantizers.0.in_proj.weight_g") for line in lines)
    missing = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 2 and "not an objective-parity fixture" in missing.stderr
