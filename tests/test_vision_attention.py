"""core/vision_attention.py: attention per segment (image or Qwen2.5-VL window), grouped by length.

The grouped call must be the per-segment attention transformers' sdpa path computes, also when
segments of one length are not back to back (Qwen2.5-VL's windows of a 384x384 frame: row bands of
64,64,64,32 patches and a last band of 32,32,32,16), and the fast path's vision tower must give the
same features with it as without it, on every backbone (tiny checkpoints, float32, CPU; with and
without the stand-in CUDA graphs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from internvla_s2_node.core.backbone import load_backbone
from internvla_s2_node.core.fast_generation import FastGenerator
from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.core.vision_attention import grouped_sdpa, length_groups

WINDOWS_384 = [64, 64, 64, 32] * 3 + [32, 32, 32, 16]  # Qwen2.5-VL, one 384x384 frame (392x392 after resizing)


def _per_segment(q, k, v, lengths):
    outs = [F.scaled_dot_product_attention(a, b, c) for a, b, c in zip(*(torch.split(t, lengths, dim=2) for t in (q, k, v)))]
    return torch.cat([o.transpose(1, 2) for o in outs], dim=1)  # (1, patches, heads, head_dim), as transformers returns


@pytest.mark.parametrize(
    "lengths",
    [WINDOWS_384, WINDOWS_384 * 2, [100], [16, 16, 16], [8, 24, 8, 24, 40]],
    ids=["windows", "two-frames", "one-image", "one-length", "interleaved"],
)
def test_grouped_equals_per_segment(lengths):
    g = torch.Generator().manual_seed(len(lengths))
    q, k, v = (torch.randn(1, 3, sum(lengths), 8, generator=g) for _ in range(3))
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()])
    out, _ = grouped_sdpa(None, q, k, v, cu_seq_lens_q=cu)
    assert out.shape == (1, sum(lengths), 3, 8)
    assert torch.equal(out, _per_segment(q, k, v, lengths))


def test_length_groups_and_bad_input():
    assert length_groups(WINDOWS_384) == {64: [0, 1, 2, 4, 5, 6, 8, 9, 10], 32: [3, 7, 11, 12, 13, 14], 16: [15]}
    q = torch.zeros(1, 1, 4, 2)
    with pytest.raises(ValueError, match="cu_seqlens"):
        grouped_sdpa(None, q, q, q)


class _CountingSdpa:
    """Counts ``F.scaled_dot_product_attention`` calls (transformers' per-segment ones and the grouped ones)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[int, ...]] = []
        inner = F.scaled_dot_product_attention

        def spy(query, *args, **kwargs):
            self.calls.append(tuple(query.shape))
            return inner(query, *args, **kwargs)

        monkeypatch.setattr(F, "scaled_dot_product_attention", spy)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen2_vl"])
@pytest.mark.parametrize("graphs", [None, "fake"], ids=["eager", "stand-in-graphs"])
def test_fast_path_tower_features_equal_with_grouping(arch, graphs, monkeypatch):
    b = load_backbone(str(default_tiny_checkpoint(arch)), device="cpu", dtype="float32", attn_implementation="sdpa")
    rng = np.random.default_rng(3)
    frame = Image.fromarray(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8))
    feats, calls = {}, {}
    for grouped in (False, True):
        fast = FastGenerator(b, 4, cuda_graphs=graphs, vision_grouped=grouped)
        assert fast.vision_grouped is grouped and fast.vision_graphs is (graphs == "fake")
        entry = fast._entry({}, 0, frame)
        counter = _CountingSdpa(monkeypatch)
        fast._encode([entry])
        monkeypatch.undo()
        feats[grouped], calls[grouped] = entry.feats, counter.calls
        assert fast.failures == {}
    assert torch.equal(feats[True][0], feats[False][0])
    assert len(feats[True][1]) == len(feats[False][1]) and all(torch.equal(a, c) for a, c in zip(feats[True][1], feats[False][1]))
    runs = 2 if graphs == "fake" else 1  # the stand-in graph runs each block at capture and at replay
    blocks = b.model.model.visual.blocks
    full = set(getattr(b.model.model.visual, "fullatt_block_indexes", None) or range(len(blocks)))
    windowed = len(blocks) - len(full & set(range(len(blocks))))
    per_block_plain = {True: 1, False: len(WINDOWS_384)}
    assert len(calls[False]) == runs * sum(per_block_plain[i in full] for i in range(len(blocks)))
    assert len(calls[True]) == runs * (len(blocks) - windowed + 3 * windowed)  # 3 window lengths: 64, 32, 16
    if arch == "qwen2_5_vl":
        assert windowed >= 1 and (9, 2, 64, 16) in calls[True] and (6, 2, 32, 16) in calls[True]


def test_plain_path_keeps_the_models_attention():
    """Grouping is the fast path's own (a copy of each block's attention config): the model's vision
    config, which the plain path uses (maybe in another thread), still says sdpa."""
    b = load_backbone(str(default_tiny_checkpoint("qwen2_5_vl")), device="cpu", dtype="float32", attn_implementation="sdpa")
    fast = FastGenerator(b, 4, vision_grouped=True)
    fast._encode([fast._entry({}, 0, Image.new("RGB", (384, 384), (90, 30, 200)))])
    visual = b.model.model.visual
    assert visual.config._attn_implementation == "sdpa"
    assert all(block.attn.config._attn_implementation == "sdpa" for block in visual.blocks)
    assert FastGenerator(load_backbone(str(default_tiny_checkpoint("qwen2_5_vl")), device="cpu", dtype="float32",
                                       attn_implementation="eager"), 4).vision_grouped is False  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_grouped_tower_in_graphs_equals_per_window():
    """On CUDA (float32, real block graphs captured around the grouped attention, ``cu_seqlens`` on the
    host): the Qwen2.5-VL tower's features equal the per-window path's, for a second frame too (replay)."""
    b = load_backbone(str(default_tiny_checkpoint("qwen2_5_vl")), device="cuda", dtype="float32", attn_implementation="sdpa")
    rng = np.random.default_rng(5)
    frames = [Image.fromarray(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8)) for _ in range(2)]
    feats = {}
    for grouped in (False, True):
        fast = FastGenerator(b, 4, vision_grouped=grouped)
        assert fast.vision_graphs and fast.vision_grouped is grouped
        entries = [fast._entry({}, i, f) for i, f in enumerate(frames)]
        for e in entries:
            fast._encode([e])
        torch.cuda.synchronize()
        assert fast.failures == {} and fast.stats["vision_graphs_captured"] == len(b.model.model.visual.blocks)
        feats[grouped] = [e.feats[0].clone() for e in entries]
    for a, c in zip(feats[True], feats[False]):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
