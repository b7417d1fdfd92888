"""The model side of training: load, choose what trains, LoRA, parameter groups, processor settings."""

from __future__ import annotations

import logging
import re

import torch

from ..core.backbone import BackboneKind, detect_backbone, load_backbone, model_class
from .config import TrainConfig
from .vision_attention import use_grouped_vision_attention

log = logging.getLogger(__name__)

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
COMPONENTS = ("vision", "merger", "llm")


def component_of(name: str) -> str:
    """``vision`` (ViT blocks, patch embedding), ``merger`` (patch mergers incl. Qwen3-VL's DeepStack
    mergers) or ``llm`` (language model, embeddings, LM head), from a parameter name."""
    if "visual." not in name:
        return "llm"
    return "merger" if "merger" in name else "vision"


def load_model(cfg: TrainConfig, device: torch.device, zero3: bool = False):
    """(model, processor, kind) in training mode. ZeRO-3 builds the model partitioned (HfDeepSpeedConfig set first)."""
    path = resolve_checkpoint(cfg.model_name)
    kind = detect_backbone(path)
    # Weights stay in fp32 for plain PyTorch (bf16 autocast); DeepSpeed keeps its own fp32 master copy.
    dtype = torch.bfloat16 if (cfg.bf16 and cfg.deepspeed) else torch.float32
    if zero3:
        from transformers import AutoProcessor

        model = model_class(kind).from_pretrained(path, dtype=dtype, attn_implementation=_attn(cfg, device), local_files_only=True)
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    else:
        loaded = load_backbone(path, device=str(device), dtype=dtype, attn_implementation=_attn(cfg, device))
        model, processor = loaded.model, loaded.processor
    model.train()
    set_use_cache(model, False)
    use_grouped_vision_attention(model)
    configure_processor(processor, cfg)
    return model, processor, kind


def set_use_cache(model, value: bool) -> None:
    """On the model config and its text config (Qwen3-VL reads the latter)."""
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None and hasattr(config, "use_cache"):
            config.use_cache = value


def _attn(cfg: TrainConfig, device: torch.device) -> str:
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    from ..core.backbone import resolve_attn_implementation

    return resolve_attn_implementation("auto", device)


def configure_processor(processor, cfg: TrainConfig) -> None:
    """Image budget (min/max pixels) that is trained with and saved for inference; right padding."""
    image_processor = processor.image_processor
    size = dict(getattr(image_processor, "size", {}) or {})
    size = {k: v for k, v in size.items() if v is not None}
    if cfg.min_pixels:
        size["shortest_edge"] = cfg.min_pixels
    if cfg.max_pixels:
        size["longest_edge"] = cfg.max_pixels
    image_processor.size = {"shortest_edge": size["shortest_edge"], "longest_edge": size["longest_edge"]}
    for name, value in (("min_pixels", cfg.min_pixels), ("max_pixels", cfg.max_pixels)):
        if value and hasattr(image_processor, name):
            setattr(image_processor, name, value)
    processor.tokenizer.padding_side = "right"


def set_trainable(model, cfg: TrainConfig) -> dict[str, int]:
    """Freeze or unfreeze each component; returns trainable parameter counts per component."""
    wanted = {"vision": cfg.tune_vision, "merger": cfg.tune_merger, "llm": cfg.tune_llm and not cfg.lora}
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, param in model.named_parameters():
        if ".lora_" in name:
            param.requires_grad = True
            counts["llm"] += param.numel()
            continue
        comp = component_of(name)
        param.requires_grad = wanted[comp]
        if wanted[comp]:
            counts[comp] += param.numel()
    return counts


def apply_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=LORA_TARGETS, bias="none")
    return get_peft_model(model, config)


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """One group per (component, decay) with the component's learning rate; no decay on biases and norms."""
    rates = {"vision": cfg.vision_lr or cfg.learning_rate, "merger": cfg.merger_lr or cfg.learning_rate, "llm": cfg.learning_rate}
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        ndim = len(getattr(param, "ds_shape", param.shape))  # ZeRO-3 partitions params into flat shards
        decay = ndim >= 2 and not re.search(r"norm|bias", name)
        groups.setdefault((component_of(name) if ".lora_" not in name else "llm", decay), []).append(param)
    return [
        {"params": params, "lr": rates[comp], "weight_decay": cfg.weight_decay if decay else 0.0, "name": f"{comp}{'' if decay else '_no_decay'}"}
        for (comp, decay), params in sorted(groups.items())
    ]


def enable_gradient_checkpointing(model) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_qwen3(kind: BackboneKind) -> bool:
    return kind in (BackboneKind.QWEN3_VL, BackboneKind.QWEN3_VL_MOE)


def resolve_checkpoint(name: str) -> str:
    """A local checkpoint directory for ``name``: itself, or a hub id fetched with huggingface_hub
    (only when the hub is reachable and HF_HUB_OFFLINE is unset)."""
    import os
    from pathlib import Path

    from ..core.model_ref import looks_like_hub_id

    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if not looks_like_hub_id(name):
        raise FileNotFoundError(f"{name}: checkpoint directory not found; pass a directory with config.json and *.safetensors")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{name}: not a local directory and HF_HUB_OFFLINE=1; download it first "
            f"(`hf download {name} --local-dir checkpoints/{name.split('/')[-1]}`) and pass --model DIR"
        )
    from huggingface_hub import snapshot_download

    return snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "merges.txt"])
