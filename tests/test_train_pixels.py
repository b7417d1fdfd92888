"""uint8 patches in the loader (train/pixels.py): the model sees the processor's values, for every backbone.

Samples of the synthetic recording are encoded twice, through the processor alone and with ``Patching``
(front frames patchified from uint8, the look-down frame resized by the processor and mapped back to
uint8), then normalised as the trainer does: the same token ids, token types and grids, and the same
pixel values to float32 rounding.
"""

import numpy as np
import pytest
import torch

from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train import model as model_setup
from internvla_s2_node.train.collate import PadCollator
from internvla_s2_node.train.dataset import S2Dataset
from internvla_s2_node.train.lerobot_data import DataSource, scan
from internvla_s2_node.train.pixels import Patching
from internvla_s2_node.train.samples import SampleKind, SampleOptions, build_samples
from internvla_s2_node.train.synthetic import write_synthetic_scene

ARCHS = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")


def _processor(arch):
    from transformers import AutoProcessor

    from internvla_s2_node.train.config import TrainConfig

    processor = AutoProcessor.from_pretrained(default_tiny_checkpoint(arch), local_files_only=True)
    # the navigator's budget: frames at the model input keep their size, the look-down frame is resized
    factor = processor.image_processor.patch_size * processor.image_processor.merge_size
    cfg = TrainConfig(data=["unused"], output_dir="unused", min_pixels=factor * factor, max_pixels=4 * factor * 3 * factor)
    model_setup.configure_processor(processor, cfg)
    return processor, factor


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    scene = write_synthetic_scene(root / "scene", num_episodes=2, length=12, seed=3, frame_size=(96, 72), look_down_size=(160, 120))
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    return episodes, build_samples(episodes, SampleOptions(stop_repeat=1))


@pytest.mark.parametrize("arch", ARCHS)
def test_uint8_patches_give_the_processor_values(arch, recording):
    episodes, specs = recording
    processor, factor = _processor(arch)
    patching = Patching.of(processor.image_processor)
    assert patching is not None and patching.keeps_size(2 * factor, 2 * factor) and not patching.keeps_size(160, 120)
    resize = (2 * factor, 2 * factor)
    plain = S2Dataset(episodes, specs, processor, resize=resize, on_error="raise")
    fast = S2Dataset(episodes, specs, processor, resize=resize, on_error="raise", patching=patching)
    assert {s.kind for s in specs} == set(SampleKind)
    for i in range(len(specs)):
        a, b = plain.encode(i), fast.encode(i)
        assert a.keys() == b.keys()
        for key in ("input_ids", "labels", "mm_token_type_ids", "image_grid_thw"):
            assert torch.equal(a[key], b[key]), (arch, i, key)
        assert b["pixel_values"].dtype == torch.uint8
        torch.testing.assert_close(patching.normalize(b["pixel_values"]), a["pixel_values"], rtol=0, atol=2e-6)


def test_batches_collate_uint8_and_normalise_once(recording):
    episodes, specs = recording
    processor, factor = _processor("qwen3_vl")
    patching = Patching.of(processor.image_processor)
    plain = S2Dataset(episodes, specs, processor, resize=(2 * factor, 2 * factor), on_error="raise")
    fast = S2Dataset(episodes, specs, processor, resize=(2 * factor, 2 * factor), on_error="raise", patching=patching)
    collate = PadCollator(processor.tokenizer.pad_token_id)
    indices = range(min(6, len(specs)))
    a, b = collate([plain.encode(i) for i in indices]), collate([fast.encode(i) for i in indices])
    assert b["pixel_values"].dtype == torch.uint8 and b["pixel_values"].element_size() * 4 == a["pixel_values"].element_size()
    torch.testing.assert_close(patching.normalize(b["pixel_values"]), a["pixel_values"], rtol=0, atol=2e-6)


def test_processors_it_does_not_know_keep_the_float_path():
    class NoPatches:
        image_mean = image_std = (0.5, 0.5, 0.5)

    assert Patching.of(NoPatches()) is None


def test_patchify_layout_matches_the_processor():
    """One frame of distinct values: each patch row is the processor's (channel, temporal, row, column)."""
    processor, factor = _processor("qwen3_vl")
    patching = Patching.of(processor.image_processor)
    rgb = np.random.default_rng(0).integers(0, 256, size=(2 * factor, 3 * factor, 3), dtype=np.uint8)
    from PIL import Image

    expected = processor.image_processor(images=[Image.fromarray(rgb)], return_tensors="pt")
    values, grid = patching.patchify(rgb)
    assert list(grid) == expected["image_grid_thw"][0].tolist()
    torch.testing.assert_close(patching.normalize(torch.from_numpy(values)), expected["pixel_values"], rtol=0, atol=2e-6)
