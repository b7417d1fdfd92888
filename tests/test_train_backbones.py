"""Every backbone core.backbone detects trains a couple of steps and saves a checkpoint detected as itself."""

import json
import math

import pytest

from internvla_s2_node.core.backbone import BackboneKind, detect_backbone
from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.cli import main
from internvla_s2_node.train.synthetic import write_synthetic_scene


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_scene(tmp_path_factory.mktemp("bb") / "scene", num_episodes=1, length=8, look_down_size=(56, 56))


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl_moe"])
def test_backbone_trains_and_saves(arch, data, tmp_path):
    out = tmp_path / arch
    args = [
        "--data", str(data), "--output-dir", str(out), "--model", str(default_tiny_checkpoint(arch)),
        "--resize-w", "56", "--resize-h", "56", "--min-pixels", "784", "--max-pixels", "3136", "--no-bf16",
        "--no-gradient-checkpointing", "--no-progress", "--num-workers", "0", "--device", "cpu", "--max-steps", "2",
    ]  # fmt: skip
    assert main(args) == 0
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert detect_backbone(out) == BackboneKind(arch)
