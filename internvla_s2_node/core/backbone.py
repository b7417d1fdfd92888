"""Which Qwen-VL backbone a checkpoint needs, and loading it offline.

Checkpoints are local directories in the Hugging Face layout (``config.json``,
``*.safetensors``, processor files). Nothing is downloaded, no remote code runs and
only safetensors weights are read.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import logging
import pathlib
from typing import Any

import torch

from .model_ref import looks_like_hub_id

log = logging.getLogger(__name__)

MIN_TRANSFORMERS = "4.57.0"
ATTN_IMPLEMENTATIONS = ("flash_attention_2", "sdpa", "eager")
_DTYPES = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
}  # fmt: skip


class BackboneKind(enum.Enum):
    QWEN3_VL = "qwen3_vl"
    QWEN3_VL_MOE = "qwen3_vl_moe"
    QWEN2_5_VL = "qwen2_5_vl"
    QWEN2_VL = "qwen2_vl"

    @property
    def model_class_name(self) -> str:
        return _MODEL_CLASS_NAMES[self]


_MODEL_CLASS_NAMES = {
    BackboneKind.QWEN3_VL: "Qwen3VLForConditionalGeneration",
    BackboneKind.QWEN3_VL_MOE: "Qwen3VLMoeForConditionalGeneration",
    BackboneKind.QWEN2_5_VL: "Qwen2_5_VLForConditionalGeneration",
    BackboneKind.QWEN2_VL: "Qwen2VLForConditionalGeneration",
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, unknown model type, broken weights, needs remote code."""


@dataclasses.dataclass
class LoadedBackbone:
    kind: BackboneKind
    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype
    attn_implementation: str
    path: str


def _read_config(path: pathlib.Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read config.json ({e}); fix it or use the checkpoint's original") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: config.json is not a JSON object")
    return config


def _kind_from_config(config: dict, path) -> BackboneKind:
    model_type = config.get("model_type")
    for kind in BackboneKind:
        if model_type == kind.value:
            return kind
    architectures = config.get("architectures") or []
    for kind in BackboneKind:
        if kind.model_class_name in architectures:
            return kind
    expected = ", ".join(k.value for k in BackboneKind)
    raise CheckpointError(
        f"{path}: unsupported model_type {model_type!r} (architectures {architectures}); expected one of {expected}"
    )


def _kind_from_name(name: str) -> BackboneKind:
    """Upstream's rule on a path or hub id: qwen3 (MoE if it says so), qwen2.5, else Qwen2-VL."""
    name = name.lower()
    if "qwen3" in name:
        moe = any(tag in name for tag in ("moe", "-a3b", "-a22b"))
        return BackboneKind.QWEN3_VL_MOE if moe else BackboneKind.QWEN3_VL
    if "qwen2.5" in name or "qwen2_5" in name:
        return BackboneKind.QWEN2_5_VL
    return BackboneKind.QWEN2_VL


def detect_backbone(path) -> BackboneKind:
    """From ``config.json`` (``model_type``, then ``architectures``) when there is one, else from the name."""
    p = pathlib.Path(path).expanduser()
    if (p / "config.json").is_file():
        return _kind_from_config(_read_config(p), p)
    return _kind_from_name(str(path))


def model_class(kind: BackboneKind):
    """The transformers class for ``kind``; ImportError when transformers is too old to have it."""
    import transformers
    from packaging.version import Version

    cls = getattr(transformers, kind.model_class_name, None)
    if cls is None or Version(transformers.__version__) < Version(MIN_TRANSFORMERS):
        error = ImportError(f"{kind.model_class_name} not found. Please upgrade transformers: pip install -U transformers")
        error.add_note(f"transformers >= {MIN_TRANSFORMERS} is required; found {transformers.__version__}")
        raise error
    return cls


def _checkpoint_dir(path) -> pathlib.Path:
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        if looks_like_hub_id(str(path)):
            raise CheckpointError(
                f"{path}: no such directory. Checkpoints are loaded offline only; download it first, e.g. "
                f"`hf download {path} --local-dir checkpoints/{str(path).split('/')[-1]}` "
                f"(older huggingface_hub: `huggingface-cli download {path} --local-dir ...`), then pass that directory"
            )
        raise CheckpointError(f"{path}: checkpoint directory not found; "
                              "pass a directory with config.json and *.safetensors, or tiny:<arch>")
    if not p.is_dir():
        raise CheckpointError(f"{path}: not a directory; expected a checkpoint directory with config.json and *.safetensors")
    if not (p / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json; pass a Hugging Face checkpoint directory (config.json and *.safetensors)")
    weights = sorted(p.glob("*.safetensors"))
    if not weights:
        others = sorted(f.name for f in p.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found {', '.join(others[:3])}: PyTorch pickles are not loaded, convert them to safetensors)" if others else ""
        raise CheckpointError(f"{path}: no *.safetensors weights{found}; pass a checkpoint directory with its weights")
    from safetensors import safe_open

    for f in weights:  # headers only: catches truncated or foreign files before the slow load
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as e:
            raise CheckpointError(f"{path}: {f.name} is not a valid safetensors file ({e}); download or save the weights again") from e
    return p


def free_accelerator_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back to the driver (after a model is dropped)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_device(device="auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cuda", "cpu"):
        raise ValueError(f"unsupported device {device!r}; expected 'auto', 'cpu' or 'cuda[:N]'")
    return dev


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"unsupported dtype {dtype!r}; expected 'auto' or one of {', '.join(_DTYPES)}")


def _flash_attn_importable() -> bool:
    try:
        importlib.import_module("flash_attn")
    except Exception:  # absent, or built against another torch/CUDA
        return False
    return True


_sdpa_warned = False


def resolve_attn_implementation(attn_implementation, device: torch.device) -> str:
    global _sdpa_warned
    if attn_implementation == "auto":
        if device.type == "cuda" and _flash_attn_importable():
            return "flash_attention_2"
        if not _sdpa_warned:
            _sdpa_warned = True
            why = "the device is not CUDA" if device.type != "cuda" else "flash_attn is not importable"
            log.warning("attention: using sdpa because %s (flash_attention_2 is faster on CUDA)", why)
        return "sdpa"
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(
            f"unsupported attn_implementation {attn_implementation!r}; expected 'auto' or one of {', '.join(ATTN_IMPLEMENTATIONS)}"
        )
    if attn_implementation == "flash_attention_2" and not (device.type == "cuda" and _flash_attn_importable()):
        raise ValueError("attn_implementation 'flash_attention_2' needs a CUDA device and an importable flash_attn")
    return attn_implementation


def load_backbone(path, device="auto", dtype="auto", attn_implementation="auto") -> LoadedBackbone:
    """Load a local checkpoint's model (eval mode, on ``device``) and processor (left padding)."""
    root = _checkpoint_dir(path)
    config = _read_config(root)
    if config.get("auto_map"):
        raise CheckpointError(
            f"{path}: config.json has auto_map (custom code); remote code is never run. "
            f"Use a checkpoint of a model type transformers ships ({', '.join(k.value for k in BackboneKind)})"
        )
    kind = _kind_from_config(config, root)
    cls = model_class(kind)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    attn = resolve_attn_implementation(attn_implementation, dev)

    from transformers import AutoProcessor

    offline = dict(trust_remote_code=False, local_files_only=True)
    try:
        processor = AutoProcessor.from_pretrained(root, **offline)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load the processor (expected tokenizer and preprocessor files): {e}") from e
    processor.tokenizer.padding_side = "left"
    try:
        model, info = cls.from_pretrained(
            root, dtype=torch_dtype, attn_implementation=attn, use_safetensors=True, output_loading_info=True, **offline
        )
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load {kind.model_class_name} weights: {e}") from e
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise CheckpointError(
            f"{path}: weights missing for {len(missing)} parameters (e.g. {', '.join(missing[:3])}); "
            f"the checkpoint does not match {kind.model_class_name}"
        )
    model.eval().to(dev)
    log.info("loaded %s from %s on %s (%s, %s)", kind.model_class_name, root, dev, torch_dtype, attn)
    return LoadedBackbone(kind, model, processor, dev, torch_dtype, attn, str(root.resolve()))
