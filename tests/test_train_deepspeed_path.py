"""The DeepSpeed code path, driven by a stand-in ``deepspeed`` module (DeepSpeed itself needs CUDA).

The stand-in follows DeepSpeed's documented engine contract: ``backward`` divides the loss by
the gradient-accumulation steps, ``step`` updates (clip, optimizer, scheduler) only at the
accumulation boundary. With it, ``--deepspeed`` must take the same steps as the plain loop.
"""

import importlib.machinery
import json
import sys
import types

import pytest
import torch

from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.cli import main
from internvla_s2_node.train.synthetic import write_synthetic_scene


class _Engine(torch.nn.Module):
    def __init__(self, model, optimizer, scheduler, config):
        super().__init__()
        self.module, self.optimizer, self.scheduler, self.config = model, optimizer, scheduler, config
        self.gas = config["gradient_accumulation_steps"]
        self.micro = 0
        self.norm = None

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss):
        (loss / self.gas).backward()

    def step(self):
        self.micro += 1
        if self.micro % self.gas:
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.norm = torch.nn.utils.clip_grad_norm_(params, self.config["gradient_clipping"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def get_global_grad_norm(self):
        return self.norm


@pytest.fixture
def fake_deepspeed(monkeypatch):
    calls = {}

    def initialize(model, optimizer, lr_scheduler, config):
        calls["config"] = config
        engine = _Engine(model, optimizer, lr_scheduler, config)
        return engine, optimizer, None, lr_scheduler

    module = types.ModuleType("deepspeed")
    module.__spec__ = importlib.machinery.ModuleSpec("deepspeed", None)
    module.initialize = initialize
    module.init_distributed = lambda dist_backend: calls.setdefault("backend", dist_backend)
    monkeypatch.setitem(sys.modules, "deepspeed", module)
    return calls


def _args(data, out, *extra):
    return [
        "--data", str(data), "--output-dir", str(out), "--model", str(default_tiny_checkpoint("qwen3_vl")),
        "--resize-w", "64", "--resize-h", "64", "--min-pixels", "1024", "--max-pixels", "4096", "--no-bf16",
        "--no-gradient-checkpointing", "--no-progress", "--num-workers", "0", "--device", "cpu", "--max-steps", "3",
        "--per-device-batch-size", "1", "--grad-accum", "2", "--learning-rate", "2e-3", "--warmup-ratio", "0", *extra,
    ]  # fmt: skip


def test_deepspeed_path_matches_the_plain_loop(fake_deepspeed, tmp_path):
    from pathlib import Path

    data = write_synthetic_scene(tmp_path / "scene", num_episodes=2, length=12, look_down_size=(64, 48))
    ds_config = Path(__file__).resolve().parents[1] / "scripts" / "ds_zero2.json"
    assert main(_args(data, tmp_path / "plain")) == 0
    assert main(_args(data, tmp_path / "ds", "--deepspeed", str(ds_config))) == 0
    config = fake_deepspeed["config"]
    assert fake_deepspeed["backend"] == "gloo"
    assert (config["gradient_accumulation_steps"], config["train_micro_batch_size_per_gpu"], config["train_batch_size"]) == (2, 1, 2)
    assert "optimizer" not in config and config["zero_optimization"]["stage"] == 2

    def log(name):
        return [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]

    plain, ds = log("plain"), log("ds")
    assert [r["loss"] for r in ds] == pytest.approx([r["loss"] for r in plain], rel=1e-5)
    assert [r["grad_norm"] for r in ds] == pytest.approx([r["grad_norm"] for r in plain], rel=1e-4)
    assert (tmp_path / "ds" / "model.safetensors").is_file()
