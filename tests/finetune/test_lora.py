"""LoRA on MuQ: target resolution, adapter save / load, merge into a plain checkpoint."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from muqkit import MuQ  # noqa: E402
from muqkit.finetune.lora import (  # noqa: E402
    LoRAConfig,
    add_lora,
    available_targets,
    load_adapter,
    merge_lora,
    resolve_targets,
    save_adapter,
    trainable_parameters,
)


@pytest.fixture
def muq():
    return MuQ.from_preset("tiny", seed=0).eval()


def test_targets_are_muq_module_names(muq):
    assert available_targets(muq) == [
        "intermediate_dense", "linear_k", "linear_out", "linear_q", "linear_v", "output_dense",
        "pointwise_conv1", "pointwise_conv2",
    ]  # fmt: skip
    names = resolve_targets(muq, LoRAConfig(targets=("attention",)))
    assert len(names) == 2 * 4 and "conformer.layers.1.self_attn.linear_v" in names
    names = resolve_targets(muq, LoRAConfig(targets=("linear_q", "conv"), layers=(1,)))
    assert names == [
        "conformer.layers.1.self_attn.linear_q",
        "conformer.layers.1.conv_module.pointwise_conv1",
        "conformer.layers.1.conv_module.pointwise_conv2",
    ]
    assert len(resolve_targets(muq, LoRAConfig(targets=("ffn",)))) == 2 * 4  # ffn1 and ffn2, two each


def test_unknown_target_lists_the_available_ones(muq):
    with pytest.raises(ValueError, match=r"unknown LoRA target 'q_proj': MuQ's modules are .*linear_q.*groups"):
        resolve_targets(muq, LoRAConfig(targets=("q_proj", "v_proj")))
    with pytest.raises(ValueError, match="out of range"):
        resolve_targets(muq, LoRAConfig(layers=(5,)))


def _perturb(peft_model):
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # peft starts B at zero: give the adapter an effect


def test_adapter_save_load_merge_equality(muq, tmp_path):
    wav = torch.randn(2, 24000)
    before = muq(wav).last_hidden_state
    model = add_lora(muq, LoRAConfig(targets=("attention", "ffn", "conv"), rank=4))
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert 0 < trainable_parameters(model) < base / 5  # only the adapters train
    _perturb(model)
    model.eval()
    adapted = model(wav).last_hidden_state
    assert not torch.allclose(adapted, before, atol=1e-4)
    save_adapter(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    reloaded = load_adapter(MuQ.from_preset("tiny", seed=0).eval(), tmp_path / "adapter").eval()
    torch.testing.assert_close(reloaded(wav).last_hidden_state, adapted, rtol=1e-5, atol=1e-5)

    merged = merge_lora(model)
    assert isinstance(merged, MuQ) and not any("lora" in n for n, _ in merged.named_parameters())
    merged.save_pretrained(tmp_path / "merged")
    plain = MuQ.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(plain(wav).last_hidden_state, adapted, rtol=1e-4, atol=1e-4)
