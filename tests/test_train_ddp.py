"""Two CPU processes (torchrun, gloo) take the same optimizer steps as one process on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.synthetic import write_synthetic_scene

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS = 4


def _args(data, out, batch, *extra):
    return [
        "-m", "internvla_s2_node.train.cli",
        "--data", str(data), "--output-dir", str(out), "--model", str(default_tiny_checkpoint("qwen3_vl")),
        "--resize-w", "64", "--resize-h", "64", "--min-pixels", "1024", "--max-pixels", "4096",
        "--no-bf16", "--no-gradient-checkpointing", "--no-progress", "--num-workers", "0", "--device", "cpu",
        "--max-steps", str(STEPS), "--per-device-batch-size", str(batch), "--learning-rate", "2e-3", "--vision-lr", "1e-3",
        "--warmup-ratio", "0", "--seed", "3", *extra,
    ]  # fmt: skip


def _run(cmd, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _losses(out):
    return [json.loads(line)["loss"] for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_scene(tmp_path_factory.mktemp("ddp") / "scene", num_episodes=3, length=12, look_down_size=(64, 48))


@pytest.mark.timeout(900)
def test_two_processes_match_one(data, tmp_path):
    one, two, accum = tmp_path / "one", tmp_path / "two", tmp_path / "accum"
    _run([sys.executable, *_args(data, one, 2)], tmp_path)
    _run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *_args(data, two, 1)], tmp_path)
    _run([sys.executable, *_args(data, accum, 1, "--grad-accum", "2")], tmp_path)
    ref = _losses(one)
    assert len(ref) == STEPS and ref[-1] < ref[0]
    for other in (two, accum):
        assert _losses(other) == pytest.approx(ref, rel=1e-4, abs=1e-5), other.name
    w_one, w_two = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert w_one.keys() == w_two.keys()
    base = load_file(default_tiny_checkpoint("qwen3_vl") / "model.safetensors")
    moved = max(float((w_one[k] - base[k]).abs().max()) for k in w_one if k in base)
    worst = max(float((w_one[k] - w_two[k]).abs().max()) for k in w_one)
    # Adam turns float-level gradient differences on near-zero gradients into at most lr-sized moves
    assert moved > 1e-3 and worst < 0.15 * moved, (worst, moved)
    report = json.loads((two / "train_config.json").read_text())
    assert report["per_device_batch_size"] == 1
