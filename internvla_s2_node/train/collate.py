"""Conversations to model inputs: tokens, answer-only labels, and padded batches.

A conversation is rendered with the checkpoint's own chat template and cut into the
segments inference sees: each prompt (everything up to and including the generation
prompt ``<|im_start|>assistant\\n``) and each answer (the assistant text and its
``<|im_end|>``). Prompt segments go through the processor with their images, answers
through the tokenizer; only answer tokens carry labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


class TemplateError(ValueError):
    """The chat template renders conversations in a way answer masking cannot follow."""


def _render(processor, messages, generation_prompt: bool) -> str:
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def split_segments(processor, messages: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """``(text, is_answer)`` pieces whose concatenation is the rendered conversation."""
    full = _render(processor, messages, False)
    segments: list[tuple[str, bool]] = []
    pos = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(processor, messages[:i], True)
        if not full.startswith(prompt) or len(prompt) < pos:
            raise TemplateError("the chat template's generation prompt is not a prefix of the rendered conversation")
        end = full.find(END_OF_TURN, len(prompt))
        if end < 0:
            raise TemplateError(f"assistant turn {i} does not end with {END_OF_TURN}")
        end += len(END_OF_TURN)
        answer = full[len(prompt) : end]
        if _message_text(message) not in answer:
            raise TemplateError(f"assistant turn {i}: rendered answer {answer!r} does not contain its text")
        segments += [(full[pos : len(prompt)], False), (answer, True)]
        pos = end
    if pos < len(full):
        segments.append((full[pos:], False))
    return segments


def _message_text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content if c.get("type") == "text")


def encode_conversation(processor, messages: list[dict[str, Any]], images: list[Any], patching=None) -> dict[str, torch.Tensor]:
    """One sample's tensors: ``input_ids`` and ``labels`` (1-D), pixel values and grids. With ``patching``
    (train.pixels.Patching) the pixel values are the uint8 patches the trainer normalises on the device."""
    image_token = getattr(processor, "image_token", "<|image_pad|>")
    ids, labels, mm_types, pixels, grids = [], [], [], [], []
    remaining = list(images)
    for index, (text, is_answer) in enumerate(split_segments(processor, messages)):
        if is_answer:
            tokens = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += tokens
            labels += tokens
            mm_types += [0] * len(tokens)
            continue
        n_images = text.count(image_token)
        seg_images, remaining = remaining[:n_images], remaining[n_images:]
        enc = _encode_prompt(processor, text, seg_images, index == 0, patching)
        tokens = enc["input_ids"][0].tolist()
        ids += tokens
        labels += [IGNORE_INDEX] * len(tokens)
        mm_types += enc["mm_token_type_ids"][0].tolist() if "mm_token_type_ids" in enc else [0] * len(tokens)
        if n_images:
            pixels.append(enc["pixel_values"])
            grids.append(enc["image_grid_thw"])
    if remaining:
        raise ValueError(f"{len(remaining)} images left over: the conversation has fewer image slots than images")
    out = {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "mm_token_type_ids": torch.tensor(mm_types, dtype=torch.long),
    }
    if pixels:
        out["pixel_values"] = torch.cat(pixels)
        out["image_grid_thw"] = torch.cat(grids)
    return out


def _encode_prompt(processor, text: str, images: list, first: bool, patching) -> dict[str, torch.Tensor]:
    """A prompt segment through the processor; with ``patching``, frames the processor would not resize are
    patchified from their uint8 pixels and the text expanded as the processor expands it."""
    sizes = [getattr(image, "size", None) for image in images]
    if patching is None or not images or not all(s and patching.keeps_size(*s) for s in sizes):
        enc = processor(text=[text], images=images or None, add_special_tokens=first, return_tensors="pt")
        if patching is not None and images:
            enc["pixel_values"] = patching.to_uint8(enc["pixel_values"])
        return enc
    image_token = getattr(processor, "image_token", "<|image_pad|>")
    patches, grids, pieces = [], [], text.split(image_token)
    expanded = pieces[0]
    for image, piece in zip(images, pieces[1:]):
        values, grid = patching.patchify(np.asarray(image.convert("RGB")))
        patches.append(values)
        grids.append(grid)
        expanded += image_token * (grid[1] * grid[2] // patching.merge**2) + piece
    enc = processor.tokenizer([expanded], add_special_tokens=first, return_tensors="pt")
    image_token_id = processor.tokenizer.convert_tokens_to_ids(image_token)
    return {
        "input_ids": enc["input_ids"],
        "mm_token_type_ids": (enc["input_ids"] == image_token_id).long(),
        "pixel_values": torch.from_numpy(np.concatenate(patches)),
        "image_grid_thw": torch.tensor(grids),
    }


@dataclasses.dataclass
class PadCollator:
    """Right-pads samples into a batch; images of all samples are concatenated in order."""

    pad_token_id: int

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        length = max(len(s["input_ids"]) for s in samples)
        batch = {
            "input_ids": _pad([s["input_ids"] for s in samples], length, self.pad_token_id),
            "labels": _pad([s["labels"] for s in samples], length, IGNORE_INDEX),
            "attention_mask": _pad([torch.ones_like(s["input_ids"]) for s in samples], length, 0),
            "mm_token_type_ids": _pad([s["mm_token_type_ids"] for s in samples], length, 0),
        }
        if "position_ids" in samples[0]:  # (3, length) each -> (3, batch, length); padding is masked
            batch["position_ids"] = torch.stack([_pad(list(s["position_ids"]), length, 0) for s in samples], dim=1)
        with_images = [s for s in samples if "pixel_values" in s]
        if with_images:
            batch["pixel_values"] = torch.cat([s["pixel_values"] for s in with_images])
            batch["image_grid_thw"] = torch.cat([s["image_grid_thw"] for s in with_images])
        return batch


def _pad(rows: list[torch.Tensor], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def count_label_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that carry a loss after the causal shift (the first position never does)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
