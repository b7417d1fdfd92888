"""Training's grouped vision attention (train/vision_attention.py) is the per-image attention it replaces.

Each backbone's tiny random checkpoint runs its vision tower on images of mixed sizes (runs of equal
size, as a training batch has: 160x160 frames and a 192x160 look-down frame), once with transformers'
per-image SDPA and once grouped: the same outputs and the same gradients.
"""

import copy

import pytest
import torch

from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.vision_attention import NAME, use_grouped_vision_attention

ARCHS = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")


def _vision_inputs(model, sizes):
    config = model.config.vision_config
    patch = config.patch_size
    per_patch = config.in_channels * config.temporal_patch_size * patch * patch
    grids = torch.tensor([[1, h // patch, w // patch] for h, w in sizes])
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(int(grids.prod(dim=1).sum()), per_patch, generator=g)
    return pixels, grids


def _run(model, pixels, grids):
    model.zero_grad()
    visual = model.model.visual
    out = visual(pixels, grid_thw=grids)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
    (hidden.float().square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in visual.named_parameters() if p.grad is not None}
    return hidden.detach(), grads


@pytest.mark.parametrize("arch", ARCHS)
def test_grouped_vision_attention_equals_per_image(arch):
    from internvla_s2_node.core.backbone import load_backbone

    model = load_backbone(str(default_tiny_checkpoint(arch)), device="cpu", dtype=torch.float32, attn_implementation="sdpa").model
    model.train()
    patch = model.config.vision_config.patch_size
    unit = patch * model.config.vision_config.spatial_merge_size
    sizes = [(4 * unit, 4 * unit)] * 5 + [(4 * unit, 5 * unit)] + [(4 * unit, 4 * unit)] * 3 + [(2 * unit, 3 * unit)] * 2
    pixels, grids = _vision_inputs(model, sizes)
    reference, reference_grads = _run(model, pixels, grids)

    grouped = copy.deepcopy(model)
    assert use_grouped_vision_attention(grouped)
    assert grouped.config.vision_config._attn_implementation == NAME
    out, grads = _run(grouped, pixels, grids)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    assert grads.keys() == reference_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_saved_config_names_no_custom_attention(tmp_path):
    """The checkpoint a training run saves loads anywhere: the grouped implementation is not written."""
    from internvla_s2_node.core.backbone import load_backbone

    model = load_backbone(str(default_tiny_checkpoint("qwen3_vl")), device="cpu", dtype=torch.float32, attn_implementation="sdpa").model
    assert use_grouped_vision_attention(model)
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()


def test_flash_attention_is_left_alone():
    from internvla_s2_node.core.backbone import load_backbone

    model = load_backbone(str(default_tiny_checkpoint("qwen3_vl")), device="cpu", dtype=torch.float32, attn_implementation="sdpa").model
    model.config.vision_config._attn_implementation = "flash_attention_2"
    assert not use_grouped_vision_attention(model)
    assert model.config.vision_config._attn_implementation == "flash_attention_2"
