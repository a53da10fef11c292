"""The masked-token objective: span masking, length-awareness, targets from clean audio, learning, export."""

from __future__ import annotations

import math

import pytest
import torch

from muqkit.ssl.masking import MaskingConfig, apply_noise, draw_span_mask
from muqkit.ssl.muq import MuQ
from muqkit.ssl.pretrain import LatentTargets, MuQPretrainer, PretrainConfig, PretrainOutput
from muqkit.tokenizer import IGNORE_CODE, LatentRVQ, LatentRVQConfig, MelRVQ, MelRVQConfig

SR = 24000


def _tiny(**overrides) -> MuQ:
    return MuQ.from_preset("tiny", dropout=0.0, attention_dropout=0.0, **overrides)


def _pretrainer(
    *, recon: float = 0.0, codebooks: int = 2, size: int = 32, seed: int = 0, weights: list[float] | None = None
) -> MuQPretrainer:
    torch.manual_seed(seed)
    tokenizer = MelRVQ(MelRVQConfig(num_codebooks=codebooks, codebook_size=size))
    config = PretrainConfig(num_codebooks=codebooks, codebook_size=size, recon_weight=recon, codebook_weights=weights)
    return MuQPretrainer(_tiny(), config, tokenizer)


def _audio(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    freqs = 110 * 2 ** (torch.randint(0, 36, (batch, 1), generator=g) / 12)
    return 0.3 * torch.sin(2 * torch.pi * freqs * t) + 0.01 * torch.randn(batch, t.numel(), generator=g)


def test_span_mask_geometry_and_rate():
    lengths = torch.tensor([SR * 8, SR * 3])
    g = torch.Generator().manual_seed(0)
    mask = draw_span_mask(
        lengths, num_samples=SR * 8, num_frames=200, frame_lengths=torch.tensor([200, 75]),
        config=MaskingConfig(), frame_samples=960, sample_rate=SR, generator=g,
    )  # fmt: skip
    assert mask.span_samples == 9600 and mask.span_frames == 10
    assert mask.spans.shape == (2, 20)
    # whole spans of 10 frames, aligned to the span grid
    frames = mask.frames[0].view(20, 10)
    assert bool((frames.all(1) | ~frames.any(1)).all())
    # nothing past the valid frames / samples of the short item
    assert not bool(mask.frames[1, 75:].any())
    samples = mask.samples(SR * 8, lengths)
    assert not bool(samples[1, SR * 3 :].any())
    # sample mask and frame mask agree
    assert torch.equal(samples[0, ::960][:200], mask.frames[0])
    # the masking rate is about 0.6 over many draws
    many = draw_span_mask(
        torch.full((2000,), SR * 8), num_samples=SR * 8, num_frames=200, frame_lengths=torch.full((2000,), 200),
        config=MaskingConfig(), frame_samples=960, sample_rate=SR, generator=g,
    )  # fmt: skip
    assert abs(float(many.frames.float().mean()) - 0.6) < 0.01


def test_a_trailing_part_span_is_never_masked_as_in_the_official_code():
    """A 3 s crop holds 7 whole 400 ms spans and 200 ms more: the official code draws 72000 // 9600 = 7
    spans, so its last 5 frames are never masked; nor are muqkit's (in the padded batch too)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([SR * 3] * 500 + [SR * 2] * 500)
    mask = draw_span_mask(
        lengths, num_samples=SR * 3, num_frames=75, frame_lengths=torch.tensor([75] * 500 + [50] * 500),
        config=MaskingConfig(), frame_samples=960, sample_rate=SR, generator=g,
    )  # fmt: skip
    assert not mask.frames[:, 70:].any() and mask.frames[:500, 60:70].any()
    assert not mask.frames[500:, 50:].any() and mask.frames[500:, 40:50].any()
    assert abs(float(mask.frames[:500, :70].float().mean()) - 0.6) < 0.02


def test_noise_statistics_and_clean_samples_kept():
    wavs = torch.ones(4, SR * 4)
    mask = torch.zeros_like(wavs, dtype=torch.bool)
    mask[:, : SR * 2] = True
    noisy = apply_noise(wavs, mask, noise_std=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:, SR * 2 :], wavs[:, SR * 2 :])
    assert abs(float(noisy[:, : SR * 2].std()) - 0.1) < 2e-3 and abs(float(noisy[:, : SR * 2].mean())) < 2e-3


def test_masking_config_validation():
    with pytest.raises(ValueError, match="prob"):
        MaskingConfig(prob=1.5)
    with pytest.raises(ValueError, match="whole number"):
        MaskingConfig(span_seconds=0.41).span_frames(960, SR)


def test_output_is_frozen_and_per_codebook():
    pre = _pretrainer()
    out = pre(_audio(2, 2.0), generator=torch.Generator().manual_seed(0))
    assert isinstance(out, PretrainOutput)
    with pytest.raises(AttributeError):
        out.loss = torch.tensor(0.0)  # type: ignore[misc]
    assert out.codebook_losses.shape == (2,) and out.codebook_accuracies.shape == (2,)
    assert torch.allclose(out.ce_loss, out.codebook_losses.mean())
    assert int(out.num_masked) == int(out.mask.sum()) > 0
    # untrained heads: cross-entropy near log(K)
    assert abs(float(out.ce_loss.detach()) - torch.log(torch.tensor(32.0)).item()) < 1.5
    assert {"ce_0", "acc_1", "loss"} <= set(out.metrics())


def test_codebook_weights_weight_the_loss_and_its_gradient():
    """The loss is the weighted mean of the codebooks' cross-entropies; a zero weight leaves a codebook's
    head without gradient; ce_loss stays the plain mean; weights that do not fit are refused."""
    plain = _pretrainer(codebooks=3)
    weighted = _pretrainer(codebooks=3, weights=[2.0, 1.0, 0.0])  # the same weights and targets (seed 0)
    wav = _audio(2, 2.0)
    a = plain(wav, generator=torch.Generator().manual_seed(0))
    b = weighted(wav, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b.codebook_losses, a.codebook_losses)
    torch.testing.assert_close(b.ce_loss, a.ce_loss)
    torch.testing.assert_close(b.loss, (2 * a.codebook_losses[0] + a.codebook_losses[1]) / 3)
    assert not torch.allclose(b.loss, a.loss)
    b.loss.backward()
    bias = weighted.heads.proj.bias.grad.view(3, 32)  # one projection, 32 rows per codebook
    assert bias[:2].abs().sum() > 0 and torch.count_nonzero(bias[2]) == 0
    assert weighted.config.codebook_weights == (2.0, 1.0, 0.0)
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="codebook_weights needs 3"):
            PretrainConfig(num_codebooks=3, codebook_size=32, codebook_weights=bad)


def test_padding_never_a_target_and_padded_item_matches_alone():
    """Padding is never masked nor a target; a padded item gives the same loss terms as alone."""
    pre = _pretrainer().eval()
    wavs = _audio(2, 3.0)
    lengths = torch.tensor([SR * 3, SR * 2])
    codes = pre.encode_targets(wavs, lengths)
    assert bool((codes[1, :, 50:] == IGNORE_CODE).all())  # the tokenizer marks padding
    out = pre(wavs, lengths, generator=torch.Generator().manual_seed(3))
    assert not bool(out.mask[1, 50:].any())
    assert out.lengths.tolist() == [75, 50]

    spans = torch.tensor([[True, False, True, True, False, True, True, True]] * 2)
    only_second = codes.clone()
    only_second[0] = IGNORE_CODE
    noise_free = MuQPretrainer(
        pre.model, PretrainConfig(num_codebooks=2, codebook_size=32, masking=MaskingConfig(noise_std=0.0)), pre.targets
    ).eval()
    noise_free.heads.load_state_dict(pre.heads.state_dict())
    a = noise_free(wavs, lengths, codes=only_second, spans=spans)
    b = noise_free(wavs[1:2, : SR * 2], spans=spans[1:2])
    assert int(a.num_masked) == int(b.num_masked) == 30  # spans 0, 2, 3 of item 1 (2 s: 5 spans of 10 frames)
    assert torch.allclose(a.codebook_losses, b.codebook_losses, atol=1e-5)
    assert torch.equal(a.codebook_accuracies, b.codebook_accuracies)


def test_targets_come_from_clean_audio():
    pre = _pretrainer()
    seen = {}
    original = pre.targets.encode

    def spy(wavs, lengths=None):
        seen["wavs"] = wavs.clone()
        return original(wavs, lengths)

    pre.targets.encode = spy  # type: ignore[method-assign]
    wavs = _audio(1, 2.0)
    pre(wavs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(seen["wavs"], wavs)


def test_pre_extracted_codes_need_no_tokenizer():
    pre = MuQPretrainer(_tiny(), PretrainConfig(num_codebooks=3, codebook_size=16), None)
    codes = torch.randint(0, 16, (2, 3, 50))
    out = pre(_audio(2, 2.0), codes=codes, generator=torch.Generator().manual_seed(0))
    assert out.codebook_losses.shape == (3,)
    # the loss is the mean of the codebooks' cross-entropies; untrained heads guess near uniformly over 16 codes
    torch.testing.assert_close(out.loss, out.codebook_losses.mean())
    assert torch.all((out.codebook_losses - math.log(16)).abs() < 1.5), out.codebook_losses
    with pytest.raises(ValueError, match="codes="):
        pre(_audio(2, 2.0))
    with pytest.raises(ValueError, match="codebooks"):
        MuQPretrainer(_tiny(), PretrainConfig(num_codebooks=3, codebook_size=16), MelRVQ(MelRVQConfig(num_codebooks=2)))


def test_no_masked_frame_gives_zero_loss_with_gradients():
    pre = MuQPretrainer(_tiny(), PretrainConfig(num_codebooks=1, codebook_size=8, masking=MaskingConfig(prob=0.0)))
    out = pre(_audio(1, 1.0), codes=torch.zeros(1, 1, 25, dtype=torch.long))
    assert float(out.loss) == 0.0 and int(out.num_masked) == 0
    out.loss.backward()  # the graph exists (DDP needs every parameter in it)
    assert pre.heads.proj.weight.grad is not None


def test_overfit_loss_decreases_and_accuracy_rises():
    torch.set_num_threads(1)
    pre = _pretrainer(recon=0.5)
    wavs, lengths = _audio(2, 2.0), torch.tensor([SR * 2, int(SR * 1.5)])
    opt = torch.optim.Adam([p for p in pre.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for step in range(25):
        out = pre(wavs, lengths, generator=torch.Generator().manual_seed(step % 2))
        first = first or (float(out.ce_loss), float(out.recon_loss))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert float(out.ce_loss) < 0.3 * first[0]
    assert float(out.recon_loss) < first[1]
    assert float(out.codebook_accuracies.mean()) > 0.7
    # the frozen tokenizer did not move
    assert all(not p.requires_grad for p in pre.targets.parameters())


def test_latent_targets_shape_and_ignore():
    model = _tiny()
    rvq = LatentRVQ(LatentRVQConfig(input_dim=64, num_codebooks=2, codebook_size=16, codebook_dim=4))
    targets = LatentTargets(model, 1, rvq)
    codes = targets.encode(_audio(2, 2.0), torch.tensor([SR * 2, SR]))
    assert codes.shape == (2, 2, 50)
    assert bool((codes[1, :, 25:] == IGNORE_CODE).all()) and bool((codes[:, :, :25] >= 0).all())
    pre = MuQPretrainer(_tiny(), PretrainConfig(num_codebooks=2, codebook_size=16), targets)
    pre.train()
    assert not targets.model.training  # frozen targets stay in eval mode


def test_export_writes_heads_as_official_linear(tmp_path):
    pre = _pretrainer(codebooks=2, size=32)
    pre(_audio(1, 1.0), generator=torch.Generator().manual_seed(0)).loss.backward()
    from muqkit.hub.loaders import official_extras, save_pretrainer

    save_pretrainer(pre, tmp_path / "m")
    model = pre.model
    loaded = MuQ.from_pretrained(tmp_path / "m")
    extras = official_extras(loaded)
    assert torch.equal(extras.tensors["linear.weight"], pre.heads.proj.weight.detach())
    assert extras.config["codebook_size"] == 64 and extras.config["rvq_n_codebooks"] == 2
    wav = _audio(1, 1.0)
    assert torch.allclose(loaded(wav).last_hidden_state, model.eval()(wav).last_hidden_state, atol=1e-6)
