"""bench/bn_recalibrate.py: a pretrained MuQ's BatchNorm running statistics, re-estimated on clean audio."""

import importlib.util
from pathlib import Path

import torch

from muqkit.ssl.muq import MuQ, muq_preset

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("bn_recalibrate", REPO_ROOT / "bench" / "bn_recalibrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recalibration_gives_the_exact_average_of_the_batches_and_touches_nothing_else():
    torch.manual_seed(0)
    model = MuQ(muq_preset("tiny"))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms
    for m in norms:  # statistics that describe some other input
        m.running_mean.fill_(3.0)
        m.running_var.fill_(9.0)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [0.1 * torch.randn(2, 24000), 0.3 * torch.randn(2, 24000)]

    conformer_norm = norms[-1]  # called as a module (the front end's go through masked_batch_norm)
    seen = []  # what it is given, batch by batch
    hook = conformer_norm.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    report = load_tool().recalibrate(model, batches)
    hook.remove()

    assert len(report) == len(norms) and report[0]["var_ratio"] < 1
    dims = [0] + list(range(2, seen[0].dim()))
    means = torch.stack([x.mean(dims) for x in seen])
    variances = torch.stack([x.var(dims, unbiased=True) for x in seen])
    assert len(seen) == len(batches)
    torch.testing.assert_close(conformer_norm.running_mean, means.mean(0))
    torch.testing.assert_close(conformer_norm.running_var, variances.mean(0))
    assert all(not torch.equal(m.running_mean, torch.full_like(m.running_mean, 3.0)) for m in norms)
    assert all(int(m.num_batches_tracked) == len(batches) for m in norms)  # every one saw every batch
    assert all(not torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in norms)  # not just reset
    assert not model.training and all(not m.training for m in model.modules())
    assert all(m.momentum == 0.1 for m in norms)
    for k, v in model.state_dict().items():
        if k in weights:
            assert torch.equal(v, weights[k]), k
