"""scripts/train_navigator.py: a model trained in rounds (each from the previous round's export) keeps its whole
training log, with each row's round and its step and samples counted from the first round."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_navigator.py"


@pytest.fixture(scope="module")
def navigator():
    spec = importlib.util.spec_from_file_location("train_navigator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, name, init, lr, steps, batch=4):
    run = tmp_path / name
    run.mkdir()
    config = {"model": str(init), "learning_rate": lr, "per_device_batch_size": batch, "data": ["d"]}
    (run / "train_config.json").write_text(json.dumps(config))
    rows = [{"step": s, "samples": s * batch, "loss": 1.0 / s, "lr": lr, "elapsed_s": float(s)} for s in range(10, steps + 1, 10)]
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def _export(tmp_path, navigator, run, name):
    log, rounds = navigator.training_rounds(run)
    out = tmp_path / name
    out.mkdir()
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (out / "train_rounds.json").write_text(json.dumps({"rounds": rounds}))
    return out, log, rounds


def test_rounds_continue_the_curve_of_the_checkpoint_they_start_from(tmp_path, navigator):
    init = tmp_path / "init"
    init.mkdir()  # random weights: no log
    first, log1, rounds1 = _export(tmp_path, navigator, _run(tmp_path, "run1", init, 1e-3, 30), "round1")
    assert [(r["round"], r["global_step"]) for r in log1] == [(1, 10), (1, 20), (1, 30)]
    assert rounds1 == [{"round": 1, "init": str(init), "learning_rate": 1e-3, "batch": 4, "steps": 30, "schedule_steps": None,
                        "samples": 120, "train_s": 30.0, "turn_repeat": 1, "data": ["d"]}]
    run2 = _run(tmp_path, "run2", first, 5e-4, 20)
    (run2 / "trainer_state.json").write_text(json.dumps({"step": 20, "total_steps": 50}))  # a time limit cut its schedule
    _, log2, rounds2 = _export(tmp_path, navigator, run2, "round2")
    assert [(r["round"], r["step"], r["global_step"], r["global_samples"]) for r in log2] == [
        (1, 10, 10, 40), (1, 20, 20, 80), (1, 30, 30, 120), (2, 10, 40, 160), (2, 20, 50, 200)]
    assert [(r["round"], r["init"], r["learning_rate"]) for r in rounds2] == [(1, str(init), 1e-3), (2, str(first), 5e-4)]
    assert [(r["steps"], r["schedule_steps"]) for r in rounds2] == [(30, None), (20, 50)]


def test_a_checkpoint_from_before_rounds_counts_as_round_one(tmp_path, navigator):
    old = _run(tmp_path, "old", tmp_path, 1e-3, 20)  # its log has no round fields, and no train_rounds.json
    log, rounds = navigator.training_rounds(_run(tmp_path, "run", old, 1e-4, 10))
    assert [(r["round"], r["global_step"]) for r in log] == [(1, 10), (1, 20), (2, 30)]
    assert [r["round"] for r in rounds] == [1, 2] and rounds[0]["steps"] == 20


def test_evaluate_stage_runs_the_held_out_split_in_shards_without_ros(tmp_path):
    """``evaluate``: --procs engine-mode shards of the held-out split, merged; the navigator's params on the CPU."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(SCRIPT), "evaluate", "--work", str(tmp_path), "--procs", "2", "--eval-limit", "2",
                          "--eval-name", "smoke"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "eval" / "smoke" / "summary.json").read_text())
    assert summary["s2"]["episodes"] == 2 and summary["s2"]["run"]["identity"]["s2_mode"] == "engine"
    assert "device: cpu" in (tmp_path / "dagger_s2.yaml").read_text()
