"""Greedy answers of a model on training samples, the way the engine asks (for checks after training)."""

from __future__ import annotations

import dataclasses

import torch

from .dataset import S2Dataset


@dataclasses.dataclass(frozen=True)
class AnswerCheck:
    sample: int
    turn: int
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.got.strip() == self.expected


@torch.inference_mode()
def greedy_answer(model, processor, messages: list[dict], max_new_tokens: int = 16) -> str:
    images = [c["image"] for m in messages for c in m["content"] if c.get("type") == "image"]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=images or None, return_tensors="pt").to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def check_answers(model, processor, dataset: S2Dataset, indices=None) -> list[AnswerCheck]:
    """Every assistant turn of the chosen samples, answered greedily from the turns before it."""
    was_training = model.training
    model.eval()
    checks = []
    try:
        for i in indices if indices is not None else range(len(dataset)):
            messages, _ = dataset.conversation(i)
            for turn, k in enumerate(j for j, m in enumerate(messages) if m["role"] == "assistant"):
                expected = "".join(c["text"] for c in messages[k]["content"] if c.get("type") == "text")
                checks.append(AnswerCheck(i, turn, expected, greedy_answer(model, processor, messages[:k])))
    finally:
        model.train(was_training)
    return checks
