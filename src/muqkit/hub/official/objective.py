"""Replay one training step recorded from the official MuQ code and compare it with muqkit's.

A fixture folder (``../shared/parity/objective_small`` is one) holds:

- ``model/``: an official ``MuQ`` checkpoint with every dropout at 0 (its ``model.rvq.*`` is the
  Mel-RVQ, its ``model.linear.*`` the prediction head);
- ``inputs.safetensors``: ``wavs`` (B, samples), ``block_mask`` (B, blocks) of 400 ms blocks,
  ``masked_wavs`` (the masked blocks filled with the recorded noise), ``frame_mask`` (B, frames) and
  ``rvq_input`` (B, stack * n_mels, frames), the normalised stacked mel;
- ``expected.safetensors``: ``loss``, ``accuracy``, ``accuracy_per_codebook``, ``targets`` and
  ``grad.NAME`` of one train-mode step of ``MuQModel``, then ``rvq.loss`` / ``rvq.commitment`` /
  ``rvq.codebook`` / ``rvq.recon_l1`` / ``rvq.codes`` / ``rvq.grad.NAME`` of one train-mode step of
  the Mel-RVQ alone (``0.25 * commitment + codebook + L1`` reconstruction); NAME in official naming.

Optionally, ``expected64.safetensors`` holds the same two steps computed by the official code in
float64 end to end (``loss``, ``accuracy``, ``grad.NAME``, ``rvq.input``, ``rvq.loss`` ...).

muqkit replays both steps with :class:`~muqkit.ssl.pretrain.MuQPretrainer` (given the block mask
and the noise) and :class:`~muqkit.tokenizer.training.RVQTrainingTask` (weight-normed projections,
the official ``weight_g`` / ``weight_v``), in float32 as training runs and in float64 end to end.

float64 is compared with ``expected64`` quantity by quantity (rows ``fp64 NAME``) at 1e-9 of each
quantity's largest magnitude: the machine-independent check. float32 is compared with the official
float32 step, gradients as ``max |ours - official| / max |official|`` against ``gradient_tolerance``
(1e-4) or, where larger, the sum of both codes' float32 rounding noise on that very gradient
(muqkit's float32 against its float64, the official float32 against its float64): a gradient whose
terms cancel strongly (the first convolution's, summed over every time-frequency position, with a
ReLU input inside float32 rounding of zero) differs between CPUs' vector code by that much, and no
float32 computation is closer. Without ``expected64``, muqkit's float64 gradient is compared with
the official float32 one, against 1e-4 or muqkit's own noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from muqkit.hub.official.muq import key_from_official
from muqkit.hub.official.rvq import OFFICIAL_RVQ_PREFIX, rvq_from_official, rvq_key_from_official
from muqkit.hub.weights import read_state_dict


@dataclass(frozen=True)
class Comparison:
    """One compared quantity.

    Attributes:
        name: what is compared (official naming for gradients).
        difference: the measure (see ``unit``).
        tolerance: the largest difference that passes.
        unit: ``relative`` (losses), ``of max`` (gradients: max abs difference over the official
            gradient's largest magnitude), ``frames`` (accuracy as a count of masked frames) or
            ``codes`` (codes that differ).
        note: extra figures (float32 path, noise floor).
    """

    name: str
    difference: float
    tolerance: float
    unit: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.difference <= self.tolerance


@dataclass(frozen=True)
class ObjectiveReport:
    """Every comparison of a fixture, in order."""

    folder: str
    rows: tuple[Comparison, ...] = field(default_factory=tuple)
    title: str = "objective parity"

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> tuple[Comparison, ...]:
        return tuple(row for row in self.rows if not row.ok)

    def format(self) -> str:
        """A table, one line per quantity, then a one-line summary."""
        width = max(len(r.name) for r in self.rows)
        lines = [f"{'quantity':<{width}}  {'difference':>11}  {'tolerance':>9}  unit      status  note"]
        for r in self.rows:
            lines.append(
                f"{r.name:<{width}}  {r.difference:11.3e}  {r.tolerance:9.1e}  {r.unit:<8}  "
                f"{'ok' if r.ok else 'FAIL':<6}  {r.note}".rstrip()
            )
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        bad = self.failures
        verdict = "PASS" if not bad else "FAIL (" + ", ".join(r.name for r in bad) + ")"
        return f"{self.title} {verdict}: {len(self.rows) - len(bad)}/{len(self.rows)} quantities within tolerance"


def _load(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    for name in ("model", "inputs.safetensors", "expected.safetensors"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: not an objective-parity fixture (no {name})")
    return load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "expected.safetensors"))


def _load64(folder: Path) -> dict[str, torch.Tensor] | None:
    """The official float64 step (``expected64.safetensors``), or ``None`` when the fixture has none."""
    from safetensors.torch import load_file

    path = folder / "expected64.safetensors"
    return load_file(str(path)) if path.is_file() else None


def muqkit_parameter_name(official: str) -> str:
    """muqkit's name (in a :class:`MuQPretrainer` or a ``MelRVQ`` trained weight-normed) of an
    official ``model.*`` parameter."""
    key = official.removeprefix("model.")
    if key.startswith("linear."):
        return "heads.proj." + key[len("linear."):]
    if official.startswith(OFFICIAL_RVQ_PREFIX):
        return "rvq." + rvq_key_from_official(official[len(OFFICIAL_RVQ_PREFIX):], weight_norm=True)
    renamed = key_from_official(key)
    if renamed is None:
        raise KeyError(f"no muqkit parameter for official '{official}'")
    return "model." + renamed


def _gradients(module: torch.nn.Module, expected: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``official name -> gradient`` (float64, CPU, the official shape) for every ``{prefix}NAME`` recorded."""
    params = dict(module.named_parameters())
    grads = {}
    for key in expected:
        if key.startswith(prefix):
            official = key[len(prefix):]
            grad = params[muqkit_parameter_name(official)].grad
            if grad is None:
                raise ValueError(f"{official}: no gradient in this step")
            grads[official] = grad.detach().cpu().double().reshape(expected[key].shape)
    return grads


def replay_muq_step(
    folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """One train-mode step of :class:`MuQPretrainer` on the fixture's audio, mask and noise, in
    ``dtype`` end to end (float64: the mel frontend, the targets' Mel-RVQ, the network and the loss).

    Returns:
        ``loss``, ``accuracies`` (per codebook), ``num_masked``, ``mask`` (frames), ``targets`` and
        ``grads`` (official name -> gradient, for every ``grad.*`` the fixture holds).
    """
    from muqkit.hub.loaders import load_pretrainer
    from muqkit.tokenizer.mel_rvq import MelRVQ

    folder = Path(folder)
    inputs, expected = _load(folder)
    pretrainer = load_pretrainer(folder / "model", MelRVQ.from_pretrained(folder / "model"))
    pretrainer.train().to(device, dtype)
    wavs = inputs["wavs"].to(device, dtype)
    targets = pretrainer.encode_targets(wavs, torch.full((wavs.shape[0],), wavs.shape[1], device=device))
    out = pretrainer(wavs, codes=targets, spans=inputs["block_mask"].bool().to(device),
                     noise=inputs["masked_wavs"].to(device, dtype))
    out.loss.backward()
    grads = _gradients(pretrainer, expected, "grad.")
    return {
        "loss": out.loss.detach().cpu().double(),
        "accuracies": out.codebook_accuracies.cpu().double(),
        "num_masked": int(out.num_masked),
        "mask": out.mask.cpu(),
        "targets": targets.cpu(),
        "grads": grads,
    }


def replay_rvq_step(
    folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
    rvq_input: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One train-mode step of :class:`RVQTrainingTask` (weight-normed) in ``dtype``.

    Args:
        folder: the fixture.
        dtype: float32 as training runs, or float64.
        device: where the step runs.
        rvq_input: (B, stack * n_mels, frames) the step's input; default the fixture's float32
            ``rvq_input`` (the official float64 step has its own, ``rvq.input`` of ``expected64``).

    Returns:
        ``loss``, ``commitment``, ``codebook``, ``recon_l1``, ``codes``, ``features`` (muqkit's
        normalised stacked mel of ``wavs``, computed in ``dtype``) and ``grads`` (official name -> gradient).
    """
    from muqkit.tokenizer.base import Features
    from muqkit.tokenizer.mel_rvq import MelRVQ
    from muqkit.tokenizer.training import RVQTrainingTask

    folder = Path(folder)
    inputs, expected = _load(folder)
    tokenizer = MelRVQ.from_pretrained(folder / "model")
    assert isinstance(tokenizer, MelRVQ)
    task = RVQTrainingTask(tokenizer, weight_norm=True)
    # The official g and v as they are (fusing them would lose v's scale, which the gradients see).
    tokenizer.rvq.load_state_dict(rvq_from_official(read_state_dict(folder / "model"), weight_norm=True))
    tokenizer.to(device, dtype)
    with torch.no_grad():
        features = tokenizer.featurize(inputs["wavs"].to(device, dtype)).values.cpu()  # (B, T, D)
    tokenizer.train()
    source = inputs["rvq_input"] if rvq_input is None else rvq_input
    values = source.transpose(1, 2).to(device, dtype)  # (B, D, T) -> (B, T, D)
    lengths = torch.full((values.shape[0],), values.shape[1], device=device)
    metrics, out = task.objective(Features(values=values, lengths=lengths))
    metrics["loss"].backward()
    grads = _gradients(tokenizer, expected, "rvq.grad.")
    return {
        "loss": metrics["loss"].detach().cpu().double(),
        "commitment": metrics["commitment_loss"].cpu().double(),
        "codebook": metrics["codebook_loss"].cpu().double(),
        "recon_l1": metrics["reconstruction_l1"].cpu().double(),
        "codes": out.codes.cpu(),
        "features": features,
        "grads": grads,
    }


def _relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours.double() - reference.double()).abs().max() / reference.double().abs().max().clamp_min(1e-30))


def _scalar(value: torch.Tensor) -> torch.Tensor:
    return value.double().reshape(())


def _gradient_rows(
    prefix: str, ours32: dict[str, torch.Tensor], ours64: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
    expected64: dict[str, torch.Tensor] | None, tolerance: float,
) -> list[Comparison]:
    """float32 rows: ``|ours32 - official32|`` against ``tolerance`` or, where larger, the two float32
    computations' own distances from float64 (each code's rounding noise on this very step)."""
    rows = []
    for name, reference in expected.items():
        scale = float(reference.double().abs().max().clamp_min(1e-30))
        ours_noise = float((ours32[name] - ours64[name]).abs().max()) / scale
        if expected64 is not None:
            official_noise = _relative(reference, expected64[prefix + name])
            difference = _relative(ours32[name], reference)
            note = f"fp32 noise: muqkit {ours_noise:.1e}, official {official_noise:.1e}"
        else:  # no official float64 step: muqkit's float64 value against the official float32 one
            official_noise = 0.0
            difference = _relative(ours64[name], reference)
            note = f"fp32 path {_relative(ours32[name], reference):.1e}; fp32 noise {ours_noise:.1e}"
        allowed = max(tolerance, ours_noise + official_noise)
        if allowed > tolerance:
            note += " (tolerance = the noise floor)"
        rows.append(Comparison(f"{prefix}{name}", difference, allowed, "of max", note))
    return rows


def _float64_rows(
    muq64: dict[str, Any], rvq64: dict[str, Any], expected64: dict[str, torch.Tensor], tolerance: float
) -> list[Comparison]:
    """One row per quantity of the official float64 step (``fp64 NAME``), at ``tolerance`` of max."""
    rows = []

    def row(name: str, ours: torch.Tensor, reference: torch.Tensor) -> None:
        rows.append(Comparison(f"fp64 {name}", _relative(ours, reference), tolerance, "of max"))

    row("loss", muq64["loss"], _scalar(expected64["loss"]))
    row("accuracy", muq64["accuracies"].mean(), _scalar(expected64["accuracy"]))
    for key, reference in expected64.items():
        if key.startswith("grad."):
            row(key, muq64["grads"][key[len("grad."):]], reference)
    row("rvq.input", rvq64["features"], expected64["rvq.input"].transpose(1, 2))
    for name in ("loss", "commitment", "codebook", "recon_l1"):
        row(f"rvq.{name}", rvq64[name], _scalar(expected64[f"rvq.{name}"]))
    codes = expected64["rvq.codes"]
    rows.append(Comparison("fp64 rvq.codes", float((rvq64["codes"] != codes).sum()), 0, "codes",
                           f"{codes.numel()} codes"))
    for key, reference in expected64.items():
        if key.startswith("rvq.grad."):
            row(key, rvq64["grads"][key[len("rvq.grad."):]], reference)
    return rows


def check_objective(
    folder: str | Path, *, loss_tolerance: float = 1e-5, gradient_tolerance: float = 1e-4,
    float64_tolerance: float = 1e-9, device: str | torch.device = "cpu",
) -> ObjectiveReport:
    """Replay the fixture's two steps with muqkit and compare every recorded quantity.

    The float32 step is compared with the official float32 step (``expected.safetensors``); when the
    fixture has the official float64 step (``expected64.safetensors``), muqkit's float64 step is
    compared with it quantity by quantity (rows ``fp64 NAME``) at ``float64_tolerance``, and it
    supplies the official float32 step's own rounding noise for the float32 tolerances.

    Args:
        folder: a fixture folder in the layout above (any dims, batch size and length).
        loss_tolerance: relative tolerance of the float32 losses.
        gradient_tolerance: tolerance of each float32 gradient, relative to its largest magnitude.
        float64_tolerance: tolerance of every float64 quantity, relative to its largest magnitude.
        device: where the steps run (the fixtures were recorded on a CPU).

    Returns:
        ObjectiveReport (``ok`` when everything is within tolerance).
    """
    folder = Path(folder)
    inputs, expected = _load(folder)
    expected64 = _load64(folder)
    rows: list[Comparison] = []

    muq32 = replay_muq_step(folder, device=device)
    muq64 = replay_muq_step(folder, dtype=torch.float64, device=device)
    ref_loss = _scalar(expected["loss"])
    rows.append(Comparison("loss", float(abs(muq32["loss"] - ref_loss) / abs(ref_loss)), loss_tolerance, "relative",
                           f"muqkit {float(muq32['loss']):.7f}, official {float(ref_loss):.7f}"))
    rows.append(Comparison("targets", float((muq32["targets"] != expected["targets"]).sum()), 0, "codes",
                           f"{expected['targets'].numel()} codes"))
    if "frame_mask" in inputs:
        frame_mask = inputs["frame_mask"].bool()
        rows.append(Comparison("masked frames", float((muq32["mask"] != frame_mask).sum()), 0, "frames",
                               f"{muq32['num_masked']} masked"))
    masked = muq32["num_masked"]
    per_codebook = expected["accuracy_per_codebook"].double()
    counts = ((muq32["accuracies"] - per_codebook).abs() * masked).tolist()
    for i, count in enumerate(counts):
        rows.append(Comparison(f"accuracy_per_codebook[{i}]", count, 1.0, "frames",
                               f"muqkit {float(muq32['accuracies'][i]):.4f}, official {float(per_codebook[i]):.4f}"))
    overall = float(abs(muq32["accuracies"].mean() - _scalar(expected["accuracy"])) * masked * len(counts))
    rows.append(Comparison("accuracy", overall, 1.0, "frames"))
    grads = {k[len("grad."):]: v for k, v in expected.items() if k.startswith("grad.")}
    rows += _gradient_rows("grad.", muq32["grads"], muq64["grads"], grads, expected64, gradient_tolerance)

    rvq32 = replay_rvq_step(folder, device=device)
    rvq64 = replay_rvq_step(folder, dtype=torch.float64, device=device,
                            rvq_input=None if expected64 is None else expected64["rvq.input"])
    rvq_input = inputs["rvq_input"].transpose(1, 2)
    rows.append(Comparison("rvq.input (normalised stacked mel)", _relative(rvq32["features"], rvq_input), 1e-5,
                           "of max"))
    for name in ("loss", "commitment", "codebook", "recon_l1"):
        ref = _scalar(expected[f"rvq.{name}"])
        rows.append(Comparison(f"rvq.{name}", float(abs(rvq32[name] - ref) / abs(ref)), loss_tolerance, "relative",
                               f"muqkit {float(rvq32[name]):.7f}, official {float(ref):.7f}"))
    rows.append(Comparison("rvq.codes", float((rvq32["codes"] != expected["rvq.codes"]).sum()), 0, "codes",
                           f"{expected['rvq.codes'].numel()} codes"))
    grads = {k[len("rvq.grad."):]: v for k, v in expected.items() if k.startswith("rvq.grad.")}
    rows += _gradient_rows("rvq.grad.", rvq32["grads"], rvq64["grads"], grads, expected64, gradient_tolerance)
    if expected64 is not None:
        rows += _float64_rows(muq64, rvq64, expected64, float64_tolerance)
    return ObjectiveReport(str(folder), tuple(rows))


__all__ = ["Comparison", "ObjectiveReport", "check_objective", "muqkit_parameter_name", "replay_muq_step",
           "replay_rvq_step"]
