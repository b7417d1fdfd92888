"""One schedule across two processes: a run stopped by its time limit with --save-training-state and
continued with --resume-from takes the same steps as one uninterrupted run (CPU, float32)."""

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
STEPS = 5


def _args(data, out, *extra, steps=STEPS):
    return [
        sys.executable, "-m", "internvla_s2_node.train.cli",
        "--data", str(data), "--output-dir", str(out), "--model", str(default_tiny_checkpoint("qwen3_vl")),
        "--resize-w", "64", "--resize-h", "64", "--min-pixels", "1024", "--max-pixels", "4096",
        "--no-bf16", "--no-gradient-checkpointing", "--no-progress", "--num-workers", "0", "--device", "cpu",
        "--max-steps", str(steps), "--per-device-batch-size", "2", "--learning-rate", "2e-3", "--vision-lr", "1e-3",
        "--warmup-ratio", "0.2", "--seed", "3", *extra,
    ]  # fmt: skip


def _run(cmd, check=True):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _log(out):
    return [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_scene(tmp_path_factory.mktemp("resume") / "scene", num_episodes=3, length=12, look_down_size=(64, 48))


@pytest.mark.timeout(900)
def test_a_resumed_run_takes_the_uninterrupted_runs_steps(data, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    _run(_args(data, whole))
    # --time-limit-s 1e-6: the first process stops after its first step and saves the training state
    _run(_args(data, split, "--time-limit-s", "1e-6", "--save-training-state"))
    first = _log(split)
    assert [r["step"] for r in first] == [1]
    assert json.loads((split / "trainer_state.json").read_text()) == {"step": 1, "total_steps": STEPS}
    _run(_args(data, split, "--resume-from", str(split), "--save-training-state"))
    ref, got = _log(whole), _log(split)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in got] == pytest.approx([r["lr"] for r in ref])  # one warm-up and cosine, not two
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in ref], rel=1e-5, abs=1e-6)
    w_ref, w_got = load_file(whole / "model.safetensors"), load_file(split / "model.safetensors")
    assert w_ref.keys() == w_got.keys()
    worst = max(float((w_ref[k] - w_got[k]).abs().max()) for k in w_ref)
    assert worst < 1e-5, worst
    assert json.loads((split / "trainer_state.json").read_text()) == {"step": STEPS, "total_steps": STEPS}
    proc = _run(_args(data, tmp_path / "again", "--resume-from", str(split)), check=False)  # a finished run
    assert proc.returncode != 0 and "finished run (5 of 5 steps)" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]


def test_a_run_its_time_limit_stops_logs_its_last_step(data, tmp_path):
    out = tmp_path / "run"
    _run(_args(data, out, "--time-limit-s", "1e-6", "--logging-steps", "3"))
    assert [r["step"] for r in _log(out)] == [1]  # not a multiple of 3: the curve still ends where the weights are
    assert json.loads((out / "trainer_state.json").read_text()) == {"step": 1, "total_steps": STEPS}


def test_stop_at_step_cuts_the_run_not_the_schedule(data, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _run(_args(data, whole))
    _run(_args(data, cut, "--stop-at-step", "3"))
    ref, got = _log(whole), _log(cut)
    assert [r["step"] for r in got] == [1, 2, 3]
    assert [r["lr"] for r in got] == pytest.approx([r["lr"] for r in ref[:3]])  # the 5-step schedule's rates
    assert json.loads((cut / "trainer_state.json").read_text()) == {"step": 3, "total_steps": STEPS}


def test_resuming_with_other_steps_says_what_differs(data, tmp_path):
    out = tmp_path / "run"
    _run(_args(data, out, "--time-limit-s", "1e-6", "--save-training-state"))
    proc = _run(_args(data, out, "--resume-from", str(out), steps=STEPS + 3), check=False)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("internvla-s2-train: ") and f"run of {STEPS} steps" in line and f"has {STEPS + 3}" in line, proc.stderr[-2000:]


def test_resume_from_a_folder_without_state_is_refused_before_loading(data, tmp_path):
    proc = _run(_args(data, tmp_path / "run", "--resume-from", str(tmp_path)), check=False)
    assert proc.returncode != 0
    assert "training_state.pt not found" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
