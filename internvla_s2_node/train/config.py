"""Typed, validated training configuration.

Defaults follow upstream's System-2 recipe (InternNav scripts/train/qwenvl_train: vision tower, merger
and LLM all tuned, lr 2e-5, vision lr 5e-6, cosine with 0.3% warmup, bf16, gradient checkpointing,
min/max pixels 3136/313600, batch 2 per GPU) on Qwen3-VL-8B-Instruct.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

MODEL_SIZES = ("2B", "4B", "8B", "32B")
DTYPES = ("auto", "bfloat16", "float32")
ON_ERROR = ("raise", "skip")
SCHEDULERS = ("cosine", "linear", "constant")
TRAINING_STATE = "training_state.pt"


@dataclasses.dataclass
class TrainConfig:
    data: list[str]  # PATH or PATH@HEIGHT_CM,FRONT_PITCH,DOWN_PITCH (see lerobot_data.DataSource)
    output_dir: str
    model: str | None = None  # checkpoint directory; None: Qwen/Qwen3-VL-{model_size}-Instruct
    model_size: str = "8B"
    # Camera setup for data given without one.
    height_cm: int = 125
    front_pitch: int = 0
    down_pitch: int = 30
    # Samples (upstream's NavPixelGoalDataset).
    sample_step: int = 4
    num_history: int = 8
    num_future_steps: int = 4
    min_goal_frames: int = 3
    stop_repeat: int = 5
    pixel_goal_repeat: int = 1  # each pixel-goal sample this many times (a lever on the kinds' mix)
    turn_repeat: int = 1  # each turns sample this many times
    pixel_goal_only: bool = False
    resize_w: int = 384  # as EngineConfig: history and current frames are resized to this
    resize_h: int = 384
    min_pixels: int | None = 3136
    max_pixels: int | None = 313600
    on_bad_data: str = "skip"
    frame_cache: str | None = None  # folder for decoded+resized front frames (one .npy per episode)
    max_samples: int | None = None
    # Which parts train.
    tune_vision: bool = True
    tune_merger: bool = True
    tune_llm: bool = True
    lora: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    # Optimisation.
    learning_rate: float = 2e-5
    vision_lr: float | None = 5e-6
    merger_lr: float | None = None
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.003
    epochs: float = 1.0
    max_steps: int | None = None
    time_limit_s: float | None = None  # stop after the step that passes it, and save (the schedule is not shortened)
    stop_at_step: int | None = None  # stop after this step, and save (the schedule is not shortened either)
    per_device_batch_size: int = 2
    grad_accum: int = 1
    bf16: bool = True
    gradient_checkpointing: bool = True
    data_flatten: bool = False
    attn_implementation: str = "auto"
    device: str = "auto"
    deepspeed: str | None = None
    num_workers: int = 2
    seed: int = 42
    shuffle: bool = True
    logging_steps: int = 1
    save_steps: int = 0  # 0: only at the end
    save_total_limit: int | None = 2
    progress: bool = True
    # Resuming one schedule across processes (e.g. device calls): the run's final save also writes
    # training_state.pt (fp32 weights, optimizer, scheduler, step), and resume_from continues from one.
    save_training_state: bool = False
    resume_from: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    @property
    def model_name(self) -> str:
        return self.model or f"Qwen/Qwen3-VL-{self.model_size}-Instruct"

    def _problems(self):
        if not self.data:
            yield "give at least one data folder"
        if not str(self.output_dir).strip():
            yield "output_dir must be set"
        if self.model is None and self.model_size not in MODEL_SIZES:
            yield f"model_size must be one of {MODEL_SIZES}, got {self.model_size!r}"
        for name, low in (
            ("sample_step", 1), ("num_history", 0), ("num_future_steps", 1), ("min_goal_frames", 0), ("stop_repeat", 0),
            ("pixel_goal_repeat", 1), ("turn_repeat", 1), ("resize_w", 28), ("resize_h", 28), ("lora_r", 1), ("per_device_batch_size", 1), ("grad_accum", 1),
            ("num_workers", 0), ("logging_steps", 1), ("save_steps", 0),
        ):  # fmt: skip
            if int(getattr(self, name)) < low:
                yield f"{name} must be >= {low}, got {getattr(self, name)}"
        for name in ("max_samples", "max_steps", "stop_at_step", "save_total_limit", "min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                yield f"{name} must be >= 1 or unset, got {value}"
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            yield f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})"
        for name in ("learning_rate", "vision_lr", "merger_lr", "lora_alpha"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                yield f"{name} must be > 0, got {value}"
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            yield f"time_limit_s must be > 0 or unset, got {self.time_limit_s}"
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            yield "weight_decay and max_grad_norm must be >= 0"
        if not 0 <= self.warmup_ratio < 1:
            yield f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"
        if not 0 <= self.lora_dropout < 1:
            yield f"lora_dropout must be in [0, 1), got {self.lora_dropout}"
        if self.epochs <= 0 and not self.max_steps:
            yield "epochs must be > 0 (or set max_steps)"
        if self.lr_scheduler not in SCHEDULERS:
            yield f"lr_scheduler must be one of {SCHEDULERS}, got {self.lr_scheduler!r}"
        if self.on_bad_data not in ON_ERROR:
            yield f"on_bad_data must be one of {ON_ERROR}, got {self.on_bad_data!r}"
        if not (self.tune_vision or self.tune_merger or self.tune_llm):
            yield "nothing to train: enable at least one of tune_vision, tune_merger, tune_llm"
        if self.lora and not self.tune_llm:
            yield "lora adapts the LLM: it needs tune_llm"
        if self.resume_from is not None and not (Path(self.resume_from) / TRAINING_STATE).is_file():
            yield f"resume_from: {Path(self.resume_from) / TRAINING_STATE} not found (a run saves it with save_training_state)"
        if self.deepspeed is not None and (self.resume_from or self.save_training_state):
            yield "resume_from and save_training_state are not supported with DeepSpeed; use DeepSpeed's own checkpoints"
        if self.deepspeed is not None and not Path(self.deepspeed).is_file():
            yield f"deepspeed config {self.deepspeed} not found"
        if self.data_flatten and self.is_qwen3_vl():
            yield (
                "data_flatten (sequence packing) is not supported for Qwen3-VL: packing joins samples into one "
                "sequence and relies on the varlen flash-attention patch upstream wrote for Qwen2/2.5-VL to keep them "
                "apart; Qwen3-VL has no such path (its M-RoPE positions and attention would run across sample "
                "boundaries), so upstream keeps it off too. Train without --data-flatten"
            )
        elif self.data_flatten:
            yield "data_flatten (sequence packing) is not implemented in this trainer; train without it"

    def is_qwen3_vl(self) -> bool:
        from ..core.backbone import BackboneKind, detect_backbone

        try:
            kind = detect_backbone(self.model_name)
        except Exception:
            return "qwen3" in self.model_name.lower()
        return kind in (BackboneKind.QWEN3_VL, BackboneKind.QWEN3_VL_MOE)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")
