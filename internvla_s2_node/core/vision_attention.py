"""Vision attention within images (and Qwen2.5-VL's windows): one batched SDPA call per distinct length.

With ``sdpa`` or ``eager``, transformers' Qwen-VL vision attention splits the packed patch sequence at
``cu_seqlens`` and calls attention once per segment: per image, and in Qwen2.5-VL's window blocks per
window (a 384x384 frame is 16 windows of 64, 32 and 16 patches, in row bands 64,64,64,32 / ... /
32,32,32,16). Those calls are launch-bound. Here the segments are grouped by length: the segments of one
length are gathered (a view when they lie back to back, else one ``cat`` of the pieces of one ``split``),
attend in one call as a batch ``(segments, heads, length, head_dim)``, and are put back in their order
by one ``cat``. Segments are cut by ``split``, never by one slice each: in training the backward of every
slice writes a zero tensor the size of the whole sequence, and a batch of 64 samples with 10 frames
cut that way cost 0.6 s of device time a step in 5,000 such writes (H200 profile, 2026-12-02). Each segment still
attends only within itself, so the result is the per-segment attention (tests compare outputs: training's
gradients in tests/test_train_vision_attention.py, the fast path's tokens in tests/test_fast_generation.py).

No index tensor is built on the device, so the function is safe inside a CUDA-graph capture when
``cu_seqlens`` is a host tensor (the fast path's vision block graphs pass it so); then nothing waits
for the device either.

transformers passes ``cu_seqlens`` to the attention function only when the implementation's name
contains "flash" (``is_flash_attention_requested``), hence the name; only vision configs use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "s2_flash_compatible_grouped_sdpa"


def length_groups(lengths: list[int]) -> dict[int, list[int]]:
    """Segment indices per distinct length, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return groups


def grouped_sdpa(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, cu_seq_lens_q=None, **kwargs):
    """``query/key/value``: ``(1, heads, patches, head_dim)`` packed over segments; returns ``(1, patches, heads, head_dim)``."""
    if attention_mask is not None or cu_seq_lens_q is None:
        raise ValueError(f"{NAME} is for vision attention within images (cu_seqlens, no mask)")
    bounds = [int(b) for b in cu_seq_lens_q.tolist()]
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    groups = length_groups(lengths)
    if len(groups) == 1:  # one length: the whole sequence is one batch, a view
        (length,) = groups
        return _attend(query[0], key[0], value[0], len(lengths), length, dropout, scaling).transpose(0, 1).unsqueeze(0), None
    parts = [t[0].split(lengths, dim=1) for t in (query, key, value)]  # per tensor: one view per segment
    pieces: list[torch.Tensor] = [None] * len(lengths)  # per segment: its rows of its group's output
    for length, members in groups.items():
        count = len(members)
        if members[-1] - members[0] + 1 == count:  # back to back: a view
            a, b = bounds[members[0]], bounds[members[-1] + 1]
            q, k, v = (t[0, :, a:b] for t in (query, key, value))
        else:
            q, k, v = (torch.cat([segments[i] for i in members], dim=1) for segments in parts)
        out = _attend(q, k, v, count, length, dropout, scaling)  # (heads, count * length, head_dim)
        for i, piece in zip(members, out.split(length, dim=1)):
            pieces[i] = piece
    merged = torch.cat(pieces, dim=1)
    return merged.transpose(0, 1).unsqueeze(0), None


def _attend(q, k, v, count: int, length: int, dropout: float, scaling) -> torch.Tensor:
    """``count`` back-to-back segments of ``length`` in ``(heads, count * length, head_dim)``, each attending within itself."""
    q, k, v = (t.unflatten(1, (count, length)).transpose(0, 1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)  # (count, heads, length, head_dim)
    return out.transpose(0, 1).flatten(1, 2)


def register() -> str:
    """Register :func:`grouped_sdpa` with transformers' attention functions; returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, grouped_sdpa)
    return NAME
