"""Compare muqkit's MuQ inference with the official outputs of a ``muq_small``-layout fixture.

A fixture folder (``../shared/parity/muq_small`` is one) holds ``model/`` (an official ``MuQ``
checkpoint), ``inputs.safetensors`` (waveforms by name) and ``expected.safetensors`` with
``NAME.hidden_states.I``, ``NAME.last_hidden_state`` and ``NAME.mel_db`` for each input ``NAME``.

Each output (hidden states, and the log-mel in dB) is compared as ``max |ours - official|`` against
its tolerance (1e-4; 1e-3 dB) or, where larger, twice float32's own rounding noise on that input:
muqkit's float32 output against its float64 one (the whole model and the mel frontend widened).
An input with a near-silent stretch (the fixture's ``odd``, whose quietest bins lie near -95 dB)
has its log-mel amplify the float32 FFT's rounding (0.06 dB there on some CPUs, 1e-4 in the hidden
states), so no float32 computation, the official one included, reproduces it to the plain
tolerance on every CPU; the official run's noise, of the same kind, is taken to be as large as
muqkit's.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from muqkit.hub.official.objective import Comparison, ObjectiveReport


def compare_with_noise_floor(
    name: str, ours: torch.Tensor, ours64: torch.Tensor, reference: torch.Tensor, *, tolerance: float, unit: str
) -> Comparison:
    """``max |ours - reference|`` against ``tolerance`` or twice float32's rounding noise on this input
    (``max |ours - ours64|``), whichever is larger.

    Args:
        name: the row's name.
        ours: muqkit's float32 output.
        ours64: the same output computed in float64 end to end.
        reference: the official float32 output (same shape as ``ours``).
        tolerance: the tolerance of a well-conditioned input.
        unit: the unit of the difference (``max abs``, ``dB``).
    """
    if ours.shape != reference.shape:
        raise ValueError(f"{name}: shape {tuple(ours.shape)}, official {tuple(reference.shape)}")
    difference = float((ours.detach().cpu().double() - reference.double()).abs().max())
    noise = float((ours.detach().double() - ours64.detach().double()).abs().max())
    allowed = max(tolerance, 2 * noise)
    note = f"fp32 noise {noise:.1e}" + (" (tolerance = twice the noise floor)" if allowed > tolerance else "")
    return Comparison(name, difference, allowed, unit, note)


def check_inference(
    folder: str | Path, *, tolerance: float = 1e-4, mel_tolerance: float = 1e-3, device: str | torch.device = "cpu"
) -> ObjectiveReport:
    """Run the fixture's inputs through muqkit's MuQ and compare every recorded output.

    Args:
        folder: the fixture folder.
        tolerance: max abs difference of hidden states (raised to the float32 noise floor, see above).
        mel_tolerance: max abs difference of the log-mel in dB (raised to its noise floor likewise).
        device: where the model runs.

    Returns:
        ObjectiveReport titled ``inference parity``, a row per input and output.
    """
    from safetensors.torch import load_file

    from muqkit.audio.mel import MelFrontend
    from muqkit.ssl.muq import MuQ

    folder = Path(folder)
    for name in ("model", "inputs.safetensors", "expected.safetensors"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: not an inference-parity fixture (no {name})")
    inputs = load_file(str(folder / "inputs.safetensors"))
    expected = load_file(str(folder / "expected.safetensors"))
    model = MuQ.from_pretrained(folder / "model").to(device).eval()
    wide = copy.deepcopy(model).double()
    decibels = MelFrontend.from_config(model.config.mel).to(device)  # the log-mel before normalisation
    rows = []
    for name, wavs in inputs.items():
        with torch.no_grad():
            out = model(wavs.to(device), output_hidden_states=True)
            out64 = wide(wavs.to(device, torch.float64), output_hidden_states=True)
            mel_db = decibels(wavs.to(device)).mel
            mel_db64 = decibels(wavs.to(device, torch.float64)).mel
        assert out.hidden_states is not None and out64.hidden_states is not None
        states = zip(out.hidden_states, out64.hidden_states, strict=True)
        pairs = [(f"hidden_states.{i}", a, b) for i, (a, b) in enumerate(states)]
        pairs.append(("last_hidden_state", out.last_hidden_state, out64.last_hidden_state))
        for key, state, state64 in pairs:
            rows.append(compare_with_noise_floor(f"{name}.{key}", state, state64, expected[f"{name}.{key}"],
                                                 tolerance=tolerance, unit="max abs"))
        if f"{name}.mel_db" in expected:
            rows.append(compare_with_noise_floor(f"{name}.mel_db", mel_db, mel_db64, expected[f"{name}.mel_db"],
                                                 tolerance=mel_tolerance, unit="dB"))
    return ObjectiveReport(str(folder), tuple(rows), title="inference parity")


__all__ = ["check_inference", "compare_with_noise_floor"]
