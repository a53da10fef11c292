"""The audio tower's lag pooling (a muqkit extension): autocorrelations added to the mean over frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from muqkit.mulan.audio import LagPooling


def _with_lags(model, lags: int = 12):
    from muqkit.mulan import MuQMuLan

    config = model.config.replace(audio=dataclasses.replace(model.config.audio, lag_pooling=lags))
    torch.manual_seed(0)
    lagged = MuQMuLan.from_config(config).eval()
    missing, unexpected = lagged.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("audio.lag_pool.") for k in missing)
    return lagged


def test_autocorrelation_finds_the_period():
    pool = LagPooling(4, max_lag=20, channels=1)
    with torch.no_grad():
        pool.proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        pool.proj.bias.zero_()
    t = torch.arange(200.0)
    for period in (3, 4, 7):
        x = torch.zeros(1, 200, 4)
        x[0, :, 0] = (t % period == 0).float()  # an onset every `period` frames
        corr = pool.autocorrelation(x)[0, 0]  # lags 1..20
        assert int(corr.argmax()) + 1 == period
        assert corr[period - 1] > 0.8 and corr[period - 2] < 0


def test_padding_and_batch_do_not_change_an_item():
    pool = LagPooling(8, max_lag=30, channels=4)
    torch.nn.init.normal_(pool.out.weight)
    x = torch.randn(3, 50, 8)
    mask = torch.arange(50)[None, :] < torch.tensor([50, 37, 12])[:, None]
    together = pool(x, mask)
    for i, n in enumerate((50, 37, 12)):
        alone = pool(x[i : i + 1, :n])
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_starts_as_the_plain_mean_and_learns(tiny_mulan):
    lagged = _with_lags(tiny_mulan)
    wavs = torch.randn(2, 40_000)
    with torch.no_grad():
        torch.testing.assert_close(lagged(wavs=wavs), tiny_mulan(wavs=wavs))
    lagged.train()
    lagged(wavs=wavs).sum().backward()
    pool = lagged.audio.lag_pool
    assert pool.out.weight.grad is not None and pool.out.weight.grad.abs().sum() > 0
    with torch.no_grad():
        torch.nn.init.normal_(pool.out.weight, std=0.1)
    # Trained (here: perturbed) weights change the latents, and the proj now gets gradients too.
    lagged.zero_grad()
    lagged(wavs=wavs).sum().backward()
    assert pool.proj.weight.grad is not None and pool.proj.weight.grad.abs().sum() > 0
    lagged.eval()
    with torch.no_grad():
        assert not torch.allclose(lagged(wavs=wavs), tiny_mulan(wavs=wavs))


def test_saved_and_loaded_with_its_config(tiny_mulan, tmp_path):
    from muqkit.hub.weights import CheckpointError
    from muqkit.mulan import MuQMuLan

    lagged = _with_lags(tiny_mulan)
    with torch.no_grad():
        torch.nn.init.normal_(lagged.audio.lag_pool.out.weight, std=0.1)
    again = MuQMuLan.from_pretrained(lagged.save_pretrained(tmp_path / "m"))
    assert again.config.audio.lag_pooling == 12
    wav = torch.randn(1, 30_000)
    with torch.no_grad():
        assert torch.equal(again(wavs=wav), lagged(wavs=wav))
    with pytest.raises(CheckpointError, match="lag pooling"):
        lagged.save_pretrained(tmp_path / "off", official=True)


def test_bfloat16_follows_float32(tiny_mulan):
    lagged = _with_lags(tiny_mulan)
    with torch.no_grad():
        torch.nn.init.normal_(lagged.audio.lag_pool.out.weight, std=0.1)
        wav = torch.randn(2, 40_000)
        ref = lagged(wavs=wav)
        low = lagged.to(torch.bfloat16)(wavs=wav.bfloat16()).float()
    assert torch.nn.functional.cosine_similarity(ref, low).min() > 0.99


def test_config_and_training_option():
    from muqkit.mulan import AudioTowerConfig, mulan_preset

    assert mulan_preset("large").audio.lag_pooling == 0  # the official architecture
    assert mulan_preset("tiny").audio.lag_pooling == 50
    from muqkit.train.mulan import MuLanTrainConfig, build_model

    with pytest.raises(ValueError, match="lag_pooling"):
        AudioTowerConfig(lag_pooling=-1)
    with pytest.raises(ValueError, match="max_lag"):
        LagPooling(8, max_lag=0)
    model = build_model(MuLanTrainConfig(manifests=("-",), out="-", preset="test", lag_pooling=25))
    assert model.audio.lag_pool is not None and model.audio.lag_pool.max_lag == 25
    assert build_model(MuLanTrainConfig(manifests=("-",), out="-", preset="test")).audio.lag_pool is None
