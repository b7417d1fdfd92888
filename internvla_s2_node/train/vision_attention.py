"""Vision attention for training: images of one size attend in one batched SDPA call.

With ``sdpa`` or ``eager``, transformers' Qwen-VL vision attention splits the packed patch sequence at
``cu_seqlens`` and calls attention once per image (per window for Qwen2.5-VL). A training batch of 64
samples with 9 frames each is 576 calls per block, forward and backward: on a small model that launch
overhead, not arithmetic, sets the step time. Here consecutive images with the same patch count are
reshaped into one batch, ``(images, heads, patches, head_dim)``, and attend in one call. The result is
the per-image attention itself (tests/test_train_vision_attention.py compares outputs and gradients).

transformers passes ``cu_seqlens`` to the attention function only when the implementation's name
contains "flash" (``is_flash_attention_requested``), hence the name; only the vision config uses it.
"""

from __future__ import annotations

import itertools
import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

NAME = "s2_flash_compatible_grouped_sdpa"


def grouped_sdpa(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, cu_seq_lens_q=None, **kwargs):
    """``query/key/value``: ``(1, heads, patches, head_dim)`` packed over images; returns ``(1, patches, heads, head_dim)``."""
    if attention_mask is not None or cu_seq_lens_q is None:
        raise ValueError(f"{NAME} is for vision attention within images (cu_seqlens, no mask)")
    lengths = (cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist()
    outputs, start = [], 0
    for length, run in itertools.groupby(lengths):
        count = len(list(run))
        end = start + count * length
        q, k, v = (t[0, :, start:end].unflatten(1, (count, length)).transpose(0, 1) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)
        outputs.append(out.transpose(0, 1).flatten(1, 2))  # (heads, count * length, head_dim)
        start = end
    return torch.cat(outputs, dim=1).transpose(0, 1).unsqueeze(0), None


def use_grouped_vision_attention(model) -> bool:
    """Switch the vision tower of a Qwen-VL model to :func:`grouped_sdpa` when it runs ``sdpa``/``eager``
    (flash attention already attends per image in one call). Returns whether it switched."""
    from transformers import AttentionInterface

    vision_config = getattr(model.config, "vision_config", None)
    if vision_config is None or vision_config._attn_implementation not in ("sdpa", "eager"):
        return False
    AttentionInterface.register(NAME, grouped_sdpa)
    previous = vision_config._attn_implementation
    vision_config._attn_implementation = NAME
    log.info("vision attention: %s -> %s (one call per run of equal-size images)", previous, NAME)
    return True


def restore_vision_attention(model, implementation: str = "sdpa") -> None:
    """Undo :func:`use_grouped_vision_attention` (before a checkpoint's config is written)."""
    vision_config = getattr(model.config, "vision_config", None)
    if vision_config is not None and vision_config._attn_implementation == NAME:
        vision_config._attn_implementation = implementation
