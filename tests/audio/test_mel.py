import math

import pytest
import torch
from safetensors.torch import load_file

from muqkit.audio.mel import MelFrontend, linspace32, mel_filterbank, reflect_indices
from muqkit.hub.official.inference import compare_with_noise_floor


@pytest.mark.parametrize("name", ["batch", "odd"])
def test_log_mel_matches_official(parity_dir, name):
    inputs = load_file(str(parity_dir / "muq_small" / "inputs.safetensors"))
    expected = load_file(str(parity_dir / "muq_small" / "expected.safetensors"))
    frontend = MelFrontend()
    out = frontend(inputs[name])
    assert out.mel.dtype == torch.float32
    wide = frontend(inputs[name].double())  # float64 end to end: float32's own noise on this input
    assert wide.mel.dtype == torch.float64
    row = compare_with_noise_floor(name, out.mel, wide.mel, expected[f"{name}.mel_db"], tolerance=1e-3, unit="dB")
    assert row.ok, row
    if name == "batch":  # no near-silent bins: the plain tolerance holds
        assert row.difference <= 1e-3


def test_filterbank_is_htk_triangles():
    fb = mel_filterbank(n_freqs=1025, sample_rate=24000, n_mels=128)
    assert fb.shape == (1025, 128)
    assert fb.min() >= 0 and fb.max() <= 1
    # every band has a peak; HTK centre frequencies increase
    peaks = fb.argmax(0)
    assert torch.all(peaks[1:] >= peaks[:-1])
    # band 64's centre frequency on the HTK scale
    mel_max = 2595 * math.log10(1 + 12000 / 700)
    centre = 700 * (10 ** (mel_max * 65 / 129 / 2595) - 1)
    assert abs(peaks[64].item() * 12000 / 1024 - centre) < 12000 / 1024


def test_reflect_indices_match_numpy_reflect():
    import numpy as np

    for n in (5, 2, 13):
        idx, valid = reflect_indices(torch.tensor([n]), pad=7, total=n + 14)
        ref = np.pad(np.arange(n), 7, mode="reflect")
        assert idx[0].tolist() == ref.tolist()
        assert bool(valid.all())


def test_padded_batch_equals_items_alone():
    torch.manual_seed(0)
    fe = MelFrontend(mean=5.0, std=20.0)
    a, b = torch.randn(24000), torch.randn(7333)
    batch = torch.zeros(2, 24000)
    batch[0], batch[1, :7333] = a, b
    batch[1, 7333:] = 3.0  # garbage in the padding must not matter
    out = fe(batch, torch.tensor([24000, 7333]))
    alone_a, alone_b = fe(a[None]), fe(b[None])
    assert out.lengths.tolist() == [100, 30]
    assert torch.equal(out.mel[0], alone_a.mel[0])
    assert (out.mel[1, :, :30] - alone_b.mel[0]).abs().max() < 1e-5
    assert out.mel[1, :, 30:].abs().max() == 0


def test_shortest_input_gives_one_frame_and_shorter_fails():
    fe = MelFrontend()
    assert fe(torch.randn(1, 240)).mel.shape == (1, 128, 1)
    assert fe(torch.randn(1, 960)).mel.shape == (1, 128, 4)
    with pytest.raises(ValueError, match="too short"):
        fe(torch.randn(1, 239))


@pytest.mark.parametrize(("start", "end", "steps"), [(0, 12000, 1025), (0.0, 3266.3412420437116, 130), (-3.5, 7.25, 9),
                                                     (1.0, 1.0, 5), (2.0, 5.0, 1), (0.0, 2840.023046708319, 130)])
def test_linspace32_is_the_vectorised_kernel_on_every_cpu(start, end, steps):
    """linspace32 equals torch.linspace where ATen's kernel is vectorised; under the scalar kernel
    (ATEN_CPU_CAPABILITY=default) torch.linspace differs in a few last bits, linspace32 does not."""
    ours = linspace32(start, end, steps)
    assert ours.dtype == torch.float32 and ours.shape == (steps,)
    assert ours[0] == torch.tensor(start, dtype=torch.float32)
    assert steps == 1 or ours[-1] == torch.tensor(end, dtype=torch.float32)
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        assert torch.equal(ours, torch.linspace(start, end, steps))


def test_float64_input_is_computed_in_float64_end_to_end():
    torch.manual_seed(0)
    wavs = torch.randn(2, 24000, dtype=torch.float64) * 0.1
    frontend = MelFrontend(mean=-30.0, std=25.0)
    wide = frontend(wavs)
    narrow = frontend(wavs.float())
    assert wide.mel.dtype == torch.float64 and narrow.mel.dtype == torch.float32
    assert (wide.mel - narrow.mel.double()).abs().max() < 1e-4  # the same numbers, to float32 rounding
    assert not torch.equal(wide.mel.float(), narrow.mel)  # computed wider, not widened afterwards
    bf16 = frontend(wavs.bfloat16())
    assert bf16.mel.dtype == torch.float32
