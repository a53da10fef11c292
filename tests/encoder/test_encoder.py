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


def test_training_batch_norm_counts_valid_frames_only():
    """In training, a padded item's BatchNorm statistics (the normalised output and the running
    statistics, in the conv front end and in every Conformer conv module) are those of the item alone:
    the padding of a batch never enters them."""
    import copy

    from muqkit.encoder.conv import masked_batch_norm
    from muqkit.hub.presets import muq_preset
    from muqkit.ssl.muq import MuQ

    torch.manual_seed(0)
    model = MuQ(muq_preset("tiny", dropout=0.0, attention_dropout=0.0)).train()
    alone, padded = model, copy.deepcopy(model)
    mel = torch.randn(1, 128, 60)
    states_alone, _ = alone.embed_mel(mel, torch.tensor([60]))
    wide = torch.cat([mel, torch.zeros(1, 128, 40)], dim=-1)
    states_padded, out_lengths = padded.embed_mel(wide, torch.tensor([60]))
    valid = int(out_lengths[0])
    for a, b in zip(states_alone, states_padded, strict=True):
        assert torch.allclose(b[:, :valid], a, atol=1e-4)
    buffers = dict(padded.named_buffers())
    for name, value in alone.named_buffers():
        if "running" in name:
            assert torch.allclose(value, buffers[name], atol=1e-5), name
    # the plain BatchNorm would have counted the padding: its statistics differ
    bn = copy.deepcopy(model.conv.blocks[0].bn1).train()
    x = torch.randn(2, bn.num_features, 8, 10)
    mask = torch.ones(2, 1, 1, 10)
    mask[1, ..., 6:] = 0
    x = x * mask
    ours = masked_batch_norm(copy.deepcopy(bn), x, mask)
    theirs = copy.deepcopy(bn)(x)
    assert not torch.allclose(ours * mask, theirs * mask, atol=1e-3)
    assert torch.equal(masked_batch_norm(copy.deepcopy(bn), x, None), copy.deepcopy(bn)(x))
