"""internvla-s2-eval fails fast and never reports stale results (issue 16 items 1, 2, 6, 10).

Usage errors are checked before anything starts (in this process, no ROS); a node whose configure
fails ends the run at once with the node's reason; SIGTERM / SIGINT while waiting for the node end
cleanly; a results folder is resumed only by a run with the same settings, and summary.json says
what produced each row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from internvla_s2_node.evaluation import cli, provenance
from internvla_s2_node.evaluation.runner import EvalConfig
from processes import s2_child
from ros_domains import domain

FAST = ["--size", "96x72", "--no-maps", "--quiet"]


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert len(err) == 1 and err[0].startswith("internvla-s2-eval: "), err
    return err[0]


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    d = tmp_path_factory.mktemp("params")
    (d / "bad.yaml").write_text("s2_node:\n  ros__parameters:\n    device: [cpu\n")
    (d / "sideways.yaml").write_text("s2_node:\n  ros__parameters:\n    look_down_mode: sideways\n")
    (d / "cross.yaml").write_text("s2_node:\n  ros__parameters:\n    num_history: 20\n    history_capacity: 10\n")
    return d


@pytest.mark.parametrize("args, says", [
    (["--model", "/no/such/dir"], "--model /no/such/dir: checkpoint directory not found"),
    (["--model", "tiny:qwen4"], "unknown tiny architecture 'qwen4'"),
    (["--size", "640"], "argument --size: '640' is not WIDTHxHEIGHT; use e.g. 640x480"),
    (["--limit", "0"], "argument --limit: must be at least 1, got 0"),
    (["--params-file", "{d}/bad.yaml"], "--params-file {d}/bad.yaml: not valid YAML at line 4"),
    (["--params-file", "{d}/sideways.yaml"], "look_down_mode must be one of ['requery', 'command'], got 'sideways'; fix it"),
    (["--params-file", "{d}/none.yaml"], "--params-file {d}/none.yaml: no such file"),
    (["--episodes", "{d}/none.json.gz"], "--episodes {d}/none.json.gz: no such file"),
])
def test_usage_errors_before_anything_starts(tmp_path, capsys, params, args, says):
    out = tmp_path / "out"
    argv = ["--policy", "s2", "--out", str(out), *FAST, *[a.format(d=params) for a in args]]
    assert cli.main(argv) == 2
    assert says.format(d=params) in one_line(capsys)
    assert not out.exists()


def test_resume_only_with_the_same_settings_and_summary_says_what_ran(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--policy", "oracle", "--out", str(out), "--limit", "1", "--no-maps", "--quiet"]
    assert cli.main([*base, "--size", "96x72"]) == 0
    summary = json.loads((out / "summary.json").read_text())["oracle"]
    run = summary["run"]
    assert run["identity"]["size"] == "96x72" and run["identity"]["backend"] == "mujoco"
    assert len(run["commit"]) == 40 or run["commit"] == "unknown"
    assert run["created"][:4].isdigit() and run["updated"] >= run["created"]
    assert "random weights" not in capsys.readouterr().out
    assert cli.main([*base, "--size", "128x96"]) == 2
    line = one_line(capsys)
    assert "holds oracle results of another run (size was '96x72', now '128x96')" in line and "new --out" in line
    assert cli.main([*base, "--size", "96x72"]) == 0  # same settings: resumes (nothing left to run)


def test_s2_identity_records_model_hash_and_params(tmp_path, params):
    pytest.importorskip("rclpy")
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3_vl"}')
    cfg = EvalConfig(out=tmp_path / "o", policies=("s2",), model=str(model), params_file=str(params / "cross.yaml"))
    ident = provenance.identity(cfg, "s2")
    assert ident["model"] == str(model) and ident["model_config_sha256"] == provenance.file_sha256(model / "config.json")
    assert [p["file"].rsplit("/", 1)[-1] for p in ident["params"]] == ["sim.yaml", "cross.yaml"]
    assert all(len(p["sha256"]) == 64 for p in ident["params"])
    other = provenance.identity(EvalConfig(out=tmp_path / "o", policies=("s2",), model="tiny:qwen3_vl"), "s2")
    assert other["model"] == "tiny:qwen3_vl" and other["model_config_sha256"] is None


@pytest.mark.parametrize("model", ["tiny:qwen3_vl", "/ckpt/InternVLA-N1-System2"])
def test_merge_notes_random_weights_only_for_tiny_checkpoints(tmp_path, capsys, model):
    s2 = tmp_path / "s2"
    s2.mkdir()
    (s2 / "episodes.rank0.jsonl").write_text(json.dumps({"episode_id": 1, "metrics": {"success": 1.0, "spl": 0.5}}) + "\n")
    (s2 / "run.json").write_text(json.dumps({"identity": {"policy": "s2", "model": model}}))
    assert cli.main(["merge", "--out", str(tmp_path), "--policy", "s2"]) == 0
    printed = capsys.readouterr().out
    assert ("random weights" in printed) == model.startswith("tiny:")
    assert json.loads((tmp_path / "summary.json").read_text())["s2"]["run"]["identity"]["model"] == model


def eval_process(tmp_path, *args, mode="process"):
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain("bridge_fail_fast")), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("INTERNVLA_S2_DEBUG", None)
    cmd = [sys.executable, "-m", "internvla_s2_node.evaluation.cli", "--policy", "s2", "--s2-mode", mode,
           "--out", str(tmp_path / "out"), "--limit", "1", *FAST, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.ros
def test_configure_failure_ends_the_run_at_once_with_the_nodes_reason(tmp_path, params):
    t0 = time.monotonic()
    proc = eval_process(tmp_path, "--params-file", str(params / "cross.yaml"), mode="inprocess")
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 1, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        "internvla-s2-eval: the S2 node did not start: invalid parameters: invalid engine config: "
        "history_capacity (10) must be >= num_history (20); check --model and --params-file")
    assert "Traceback" not in err and took < 60, took


@pytest.mark.ros
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_while_waiting_for_the_node_ends_cleanly(tmp_path, sig, code, word):
    proc = eval_process(tmp_path)
    try:
        deadline = time.monotonic() + 90
        child = None
        while child is None and time.monotonic() < deadline and proc.poll() is None:
            child = s2_child(proc.pid)
            time.sleep(0.1)
        assert child is not None, "no s2_node child process"
        time.sleep(0.5)  # past Popen's return in the parent: the session now owns the child
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == f"internvla-s2-eval: {word}"
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
