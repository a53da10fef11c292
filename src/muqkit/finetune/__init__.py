"""Fine-tuning MuQ on probing tasks (freeze, LoRA, full) and running the fine-tuned heads on files."""

from muqkit.finetune.lora import LoRAConfig, add_lora, merge_lora, resolve_targets
from muqkit.finetune.model import HeadSpec, TaskHead, TaskModel

__all__ = ["HeadSpec", "LoRAConfig", "TaskHead", "TaskModel", "add_lora", "merge_lora", "resolve_targets"]
