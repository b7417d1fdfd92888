"""Turning a conversation with images into the model's text: upstream's plain way.

A generator takes chat messages whose image items are PIL images, plus one key per
image (its episode frame index, or None) that a caching generator may use to reuse
work for frames it has seen before.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Hashable, Protocol, Sequence

import torch


@dataclasses.dataclass
class Generated:
    text: str
    token_ids: list[int]
    timing: dict[str, float]


class Generator(Protocol):
    def generate(self, messages: list[dict[str, Any]], images: Sequence[Any], keys: Sequence[Hashable | None]) -> Generated: ...

    def reset(self) -> None: ...


def message_images(messages: list[dict[str, Any]]) -> list[Any]:
    return [item["image"] for m in messages for item in m["content"] if item.get("type") == "image"]


def model_inputs(backbone, messages: list[dict[str, Any]], images: Sequence[Any]):
    """The processor's tensors for ``messages`` with the generation prompt, on the backbone's device and dtype."""
    processor = backbone.processor
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=list(images), return_tensors="pt").to(backbone.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(backbone.dtype)
    return inputs


class PlainGenerator:
    """Processor plus ``model.generate`` on all images every call (upstream's way; the reference)."""

    path = "plain"  # the name decisions report (``Decision.path``)

    def __init__(self, backbone, max_new_tokens: int) -> None:
        self.backbone = backbone
        self.max_new_tokens = max_new_tokens

    def reset(self) -> None:
        pass

    @torch.inference_mode()
    def generate(self, messages, images, keys) -> Generated:
        processor, model = self.backbone.processor, self.backbone.model
        t0 = time.perf_counter()
        inputs = model_inputs(self.backbone, messages, images)
        t1 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, use_cache=True)
        t2 = time.perf_counter()
        new_ids = out[0, inputs["input_ids"].shape[1] :].tolist()
        decoded = processor.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Generated(decoded, new_ids, {"preprocess": t1 - t0, "generate": t2 - t1})
