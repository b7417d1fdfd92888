"""Writing a checkpoint the node loads: safetensors weights, config, processor and chat template."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def merged_lora_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA delta folded in (the model is not modified)."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    state = base.state_dict()
    for name, module in base.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        weight = module.get_base_layer().weight
        delta = sum(module.get_delta_weight(adapter) for adapter in module.active_adapters)
        state[f"{name}.base_layer.weight"] = weight.detach() + delta.detach().to(weight.dtype)
    out = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


def unwrap(model):
    """The Hugging Face model inside DDP / DeepSpeed / peft wrappers."""
    model = getattr(model, "module", model)
    if hasattr(model, "peft_config"):
        return model.get_base_model()
    return model


def save_checkpoint(model, processor, out_dir, state_dict=None, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Save ``model`` (or ``state_dict`` over it) and ``processor`` to ``out_dir`` in ``from_pretrained`` layout."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    inner = getattr(model, "module", model)
    if state_dict is None and hasattr(inner, "peft_config"):
        state_dict = merged_lora_state_dict(inner)
    hf_model = unwrap(model)
    if state_dict is None:
        state_dict = hf_model.state_dict()
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    from .model import set_use_cache

    set_use_cache(hf_model, True)
    try:
        hf_model.save_pretrained(tmp, state_dict={k: v.detach().cpu().contiguous() for k, v in state_dict.items()})
    finally:
        set_use_cache(hf_model, False)
    if dtype is not None:
        _set_config_dtype(tmp / "config.json", dtype)
    processor.tokenizer.padding_side = "left"  # what inference uses
    try:
        processor.save_pretrained(tmp)
    finally:
        processor.tokenizer.padding_side = "right"
    for name, payload in (extra or {}).items():
        (tmp / name).write_text(json.dumps(payload, indent=2) + "\n")
    _move_into(tmp, out)
    log.info("saved checkpoint to %s", out)
    return out


def _set_config_dtype(path: Path, dtype: torch.dtype) -> None:
    """Record the dtype the weights were saved in (config.json and its text/vision sub-configs)."""
    name = str(dtype).replace("torch.", "")
    config = json.loads(path.read_text())
    for section in (config, config.get("text_config"), config.get("vision_config")):
        if isinstance(section, dict):
            for key in ("dtype", "torch_dtype"):
                if key in section or (section is config and key == "dtype"):
                    section[key] = name
    path.write_text(json.dumps(config, indent=2) + "\n")


def _move_into(src: Path, out: Path) -> None:
    """Replace ``out``'s checkpoint files by ``src``'s (other files in ``out``, e.g. logs, stay)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.safetensors")) + list(out.glob("*.safetensors.index.json")):
        if not (src / stale.name).exists():
            stale.unlink()
    for item in src.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    src.rmdir()


def prune_checkpoints(output_dir, keep: int | None) -> None:
    """Keep the newest ``keep`` ``checkpoint-N`` folders."""
    if not keep:
        return
    folders = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
