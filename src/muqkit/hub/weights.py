"""Finding, reading and writing checkpoint folders (local or on the Hugging Face Hub)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import torch

from muqkit.atomic import atomic_path

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint folder or its weights do not fit the model that reads them."""


def resolve_folder(
    id_or_folder: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_patterns: Iterable[str] | None = None,
) -> Path:
    """Return a local folder for a checkpoint given as a folder or as a Hub repository id.

    A Hub id goes through ``huggingface_hub.snapshot_download``, which serves the local cache when
    offline (``HF_HUB_OFFLINE=1``) or when the Hub cannot be reached.

    Raises:
        CheckpointError: the argument is neither an existing folder nor a downloadable Hub id.
    """
    path = Path(id_or_folder).expanduser()
    if path.is_dir():
        return path
    name = str(id_or_folder)
    if path.exists() or name.startswith((".", "/")) or name.count("/") != 1:
        raise CheckpointError(f"{name}: not a checkpoint folder nor a Hub id of the form 'owner/name'")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
        raise CheckpointError("loading from the Hub needs huggingface_hub: pip install huggingface_hub") from exc
    patterns = list(allow_patterns) if allow_patterns is not None else [
        CONFIG_NAME, SAFETENSORS_NAME, PYTORCH_NAME, "*.json", "*.txt", "*.model"
    ]
    try:
        return Path(
            # Typed str | Path by huggingface_hub, which only os.path.join()s it: any os.PathLike works.
            snapshot_download(
                name, revision=revision, cache_dir=cast("str | Path | None", cache_dir), allow_patterns=patterns
            )
        )
    except Exception as exc:
        raise CheckpointError(
            f"{name}: could not download from the Hub nor find it in the local cache ({exc})"
        ) from exc


def read_config(folder: Path) -> dict:
    """Read ``config.json`` of a checkpoint folder."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc


def safe_torch_load(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` that never runs code: only tensors and plain containers are unpickled.

    Every ``.ckpt`` / ``.bin`` / ``.pt`` muqkit reads goes through here (checkpoints to resume from
    included), so a crafted pickle is refused instead of executed.

    Raises:
        CheckpointError: the file holds other Python objects (refused, naming the file and the first
            object), or it is missing, truncated or not a torch file.
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line.strip() for line in reason if "GLOBAL" in line or "Unsupported" in line), "")
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects beyond tensors and plain containers, "
            f"which could run code (a crafted or foreign checkpoint?){f' - {detail}' if detail else ''}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt, truncated or not a torch checkpoint ({exc})") from exc


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors``, or ``pytorch_model.bin`` with ``weights_only=True``.

    Raises:
        CheckpointError: no weights file, or one that is corrupt or truncated (the message names it).
    """
    st = folder / SAFETENSORS_NAME
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except Exception as exc:  # safetensors raises its own SafetensorError (and OSError)
            raise CheckpointError(f"{st}: corrupt or truncated safetensors file ({exc})") from exc
    pt = folder / PYTORCH_NAME
    if pt.is_file():
        state = safe_torch_load(pt)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{pt}: expected a state dict, got {type(state).__name__}")
        return dict(state)
    raise CheckpointError(f"{folder}: no {SAFETENSORS_NAME} or {PYTORCH_NAME}")


def fuse_weight_norm(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    """Pop a weight-normed weight stored under ``prefix`` and return the plain weight.

    Accepts the old naming (``prefix.weight_g`` / ``prefix.weight_v``), the parametrization naming
    (``prefix.parametrizations.weight.original0`` / ``original1``) and a plain ``prefix.weight``.
    The norm is taken over every dimension but the first (``torch.nn.utils.weight_norm``'s dim=0).

    Returns:
        The weight, or ``None`` when none of the namings is present.
    """
    for g_key, v_key in (
        (f"{prefix}.weight_g", f"{prefix}.weight_v"),
        (f"{prefix}.parametrizations.weight.original0", f"{prefix}.parametrizations.weight.original1"),
    ):
        if g_key in state and v_key in state:
            g = state.pop(g_key)
            v = state.pop(v_key)
            norm = v.norm(dim=tuple(range(1, v.dim())), keepdim=True)
            return v * (g / norm)
    return state.pop(f"{prefix}.weight", None)


def split_weight_norm(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fuse_weight_norm` for the old naming: return ``(weight_g, weight_v)``."""
    g = weight.norm(dim=tuple(range(1, weight.dim())), keepdim=True)
    return g, weight.clone()


def check_state_dict(
    name: str,
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
) -> None:
    """Fail with one message listing missing keys, unexpected keys and shape mismatches."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if tuple(expected[k].shape) != tuple(given[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [f"{name}: the checkpoint does not fit the model"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                parts.append(f"{title} ({len(items)}): " + ", ".join(items))
        raise CheckpointError("\n".join(parts))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_checkpoint(folder: Path, config: dict, state: Mapping[str, torch.Tensor]) -> None:
    """Write ``config.json`` and ``model.safetensors`` (contiguous, unshared tensors) atomically."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    atomic_write_bytes(folder / SAFETENSORS_NAME, save(tensors, metadata={"format": "pt"}))
    atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())


def model_fingerprint(muq: torch.nn.Module) -> str:
    """SHA-256 of a model's config and weights: what identifies a model in embedding files, indexes and exports.

    Hashes the config (as sorted JSON) and every tensor of the state dict (name, dtype, shape, bytes),
    so it changes when the weights change and not when the same weights are loaded from another path.
    """
    from dataclasses import asdict, is_dataclass

    digest = hashlib.sha256()
    config = getattr(muq, "config", None)
    config_dict = asdict(config) if is_dataclass(config) and not isinstance(config, type) else {}
    digest.update(json.dumps(config_dict, sort_keys=True, default=str).encode())
    for name, tensor in sorted(muq.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"\n{name}:{data.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
