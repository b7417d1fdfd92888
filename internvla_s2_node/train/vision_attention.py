"""Vision attention for training: images of one size attend in one batched SDPA call.

With ``sdpa`` or ``eager``, transformers' Qwen-VL vision attention splits the packed patch sequence at
``cu_seqlens`` and calls attention once per image (per window for Qwen2.5-VL). A training batch of 64
samples with 9 frames each is 576 calls per block, forward and backward: on a small model that launch
overhead, not arithmetic, sets the step time. ``core.vision_attention.grouped_sdpa`` (shared with the
fast path) makes it one call per distinct image (or window) size. The result is the per-image attention
itself (tests/test_train_vision_attention.py compares outputs and gradients).
"""

from __future__ import annotations

import logging

from ..core.vision_attention import NAME, grouped_sdpa, register

log = logging.getLogger(__name__)

__all__ = ["NAME", "grouped_sdpa", "use_grouped_vision_attention"]


def use_grouped_vision_attention(model) -> bool:
    """Switch the vision tower of a Qwen-VL model to :func:`grouped_sdpa` when it runs ``sdpa``/``eager``
    (flash attention already attends per image in one call). Returns whether it switched."""
    vision_config = getattr(model.config, "vision_config", None)
    if vision_config is None or vision_config._attn_implementation not in ("sdpa", "eager"):
        return False
    register()
    previous = vision_config._attn_implementation
    vision_config._attn_implementation = NAME
    log.info("vision attention: %s -> %s (one call per distinct image size)", previous, NAME)
    return True

