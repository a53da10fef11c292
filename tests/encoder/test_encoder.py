"""The encoder's parts: the conv front end's folded BatchNorm and the Conformer's layer bound."""

from __future__ import annotations

import pytest
import torch

from muqkit.encoder.conformer import Conformer, ConformerConfig
from muqkit.encoder.conv import ConvSubsampling


def _randomise_batch_norms(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))


def test_folded_batch_norm_follows_load_state_dict_in_eval_mode():
    """The eval path folds BatchNorm into the convolutions once; new weights must refold."""
    torch.manual_seed(0)
    conv = ConvSubsampling(128, 16, 64, (2, 2)).eval()
    mel = torch.randn(2, 128, 80)
    lengths = torch.tensor([80, 80])
    with torch.no_grad():
        before, _ = conv(mel, lengths)  # folds and caches
        other = ConvSubsampling(128, 16, 64, (2, 2))
        _randomise_batch_norms(other, 1)
        conv.load_state_dict(other.state_dict())
        after, _ = conv(mel, lengths)
        expected, _ = other.eval()(mel, lengths)
    assert float((after - expected).abs().max()) < 1e-5
    assert float((after - before).abs().max()) > 1e-2
    # and the grad-enabled (unfolded) path agrees with the folded one
    reference, _ = conv(mel, lengths)
    assert float((reference.detach() - after).abs().max()) < 1e-4


def test_conformer_refuses_layers_it_does_not_have():
    conformer = Conformer(ConformerConfig(dim=32, depth=2, num_heads=4, ffn_dim=64)).eval()
    x = torch.randn(1, 10, 32)
    assert len(conformer(x, num_layers=1)) == 2
    for bad in (3, -1):
        with pytest.raises(ValueError, match=r"num_layers must lie in \[0, 2\]"):
            conformer(x, num_layers=bad)
