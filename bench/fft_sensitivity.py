"""How far MuQ's outputs on the parity fixture move when only the FFT library changes.

The same muqkit PyTorch model runs the official ``muq_small`` fixture's inputs three times, with its real FFT
computed by PyTorch (MKL on x86 wheels), by NumPy's pocketfft in float32 (the FFT PyTorch itself uses on builds
without MKL) and in float64, and prints each run's largest hidden-state difference to the official outputs.
It shows what the ONNX graph's distance to those outputs on ``odd`` is made of.

    python bench/fft_sensitivity.py [--fixture ../shared/parity/muq_small]
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from safetensors.torch import load_file

from muqkit import MuQ


def numpy_rfft(dtype: type) -> object:
    def rfft(t: torch.Tensor, dim: int = -1) -> torch.Tensor:
        out = np.fft.rfft(t.detach().numpy().astype(dtype), axis=dim)
        return torch.from_numpy(out.astype(np.complex64))

    return rfft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", default="../shared/parity/muq_small")
    args = parser.parse_args()
    folder = Path(args.fixture)
    inputs, expected = load_file(folder / "inputs.safetensors"), load_file(folder / "expected.safetensors")
    model = MuQ.from_pretrained(folder / "model").eval()
    ffts = {"torch": None, "pocketfft-float32": numpy_rfft(np.float32), "float64": numpy_rfft(np.float64)}
    for name, wav in inputs.items():
        for fft_name, rfft in ffts.items():
            with torch.no_grad(), mock.patch("torch.fft.rfft", rfft) if rfft else nullcontext():
                hidden = model(wav, output_hidden_states=True).hidden_states
            diff = max(float((h - expected[f"{name}.hidden_states.{i}"]).abs().max()) for i, h in enumerate(hidden))
            print(json.dumps({"input": name, "fft": fft_name, "max_abs_diff_vs_official": diff}))


if __name__ == "__main__":
    main()
