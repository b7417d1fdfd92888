"""M-RoPE positions from the loader (train/positions.py) are the model's own, and give the model's loss.

For each backbone's tiny checkpoint, a batch of recorded samples (pixel-goal samples with two images of
different sizes among them, right padding) is collated with the loader's ``position_ids``. They equal the
backbone's ``get_rope_index`` on every real token, and the forward with them gives the same loss as the
forward that computes positions itself.
"""

import pytest
import torch

from internvla_s2_node.core.backbone import load_backbone
from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train import model as model_setup
from internvla_s2_node.train.collate import PadCollator
from internvla_s2_node.train.config import TrainConfig
from internvla_s2_node.train.dataset import S2Dataset
from internvla_s2_node.train.lerobot_data import DataSource, scan
from internvla_s2_node.train.pixels import Patching
from internvla_s2_node.train.positions import mrope_positions
from internvla_s2_node.train.samples import SampleKind, SampleOptions, build_samples
from internvla_s2_node.train.synthetic import write_synthetic_scene

ARCHS = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    scene = write_synthetic_scene(root / "scene", num_episodes=2, length=12, seed=5, frame_size=(96, 72), look_down_size=(160, 120))
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    return episodes, build_samples(episodes, SampleOptions(stop_repeat=1, sample_step=2))


@pytest.mark.parametrize("arch", ARCHS)
def test_loader_positions_are_the_models(arch, recording):
    episodes, specs = recording
    backbone = load_backbone(str(default_tiny_checkpoint(arch)), device="cpu", dtype=torch.float32, attn_implementation="sdpa")
    model, processor = backbone.model, backbone.processor
    factor = processor.image_processor.patch_size * processor.image_processor.merge_size
    cfg = TrainConfig(data=["unused"], output_dir="unused", min_pixels=factor * factor, max_pixels=12 * factor * factor)
    model_setup.configure_processor(processor, cfg)
    patching = Patching.of(processor.image_processor)
    dataset = S2Dataset(episodes, specs, processor, resize=(2 * factor, 2 * factor), on_error="raise",
                        patching=patching, rope_merge=patching.merge)  # fmt: skip
    picked = [i for i, s in enumerate(specs) if s.kind == SampleKind.PIXEL_GOAL][:2] + [i for i, s in enumerate(specs) if s.kind != SampleKind.PIXEL_GOAL][:2]
    batch = PadCollator(processor.tokenizer.pad_token_id)([dataset.encode(i) for i in picked])
    batch["pixel_values"] = patching.normalize(batch["pixel_values"])
    ours = batch.pop("position_ids")
    assert ours.shape == (3, *batch["input_ids"].shape)

    expected, _ = model.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"], image_grid_thw=batch["image_grid_thw"],
        attention_mask=batch["attention_mask"],
    )  # fmt: skip
    real = batch["attention_mask"].bool()
    assert torch.equal(ours[:, real], expected[:, real])

    labels = batch.pop("labels")
    with torch.no_grad():
        loss = model(**batch, labels=labels).loss
        given = model(**batch, labels=labels, position_ids=ours).loss
    torch.testing.assert_close(given, loss, rtol=1e-6, atol=1e-6)


def test_token_count_must_match_the_grid():
    types = torch.tensor([0, 0, 1, 1, 1, 0])
    with pytest.raises(ValueError, match="3 image tokens for a merged grid of 1x2x2"):
        mrope_positions(types, torch.tensor([[1, 4, 4]]), merge=2)
    positions = mrope_positions(torch.tensor([0, 0, 1, 1, 1, 1, 0]), torch.tensor([[1, 4, 4]]), merge=2)
    assert positions.tolist() == [[0, 1, 2, 2, 2, 2, 4], [0, 1, 2, 2, 3, 3, 4], [0, 1, 2, 3, 2, 3, 4]]
