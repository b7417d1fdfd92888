"""The evaluation runner: shards, merge, resume after a kill, the summary table (oracle/random, no ROS)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from internvla_s2_node.cli.errors import UsageError
from internvla_s2_node.sim import results
from internvla_s2_node.evaluation.cli import format_table
from internvla_s2_node.evaluation.runner import EvalConfig, evaluate

FAST = dict(width=96, height=72, maps=False, progress=False)


def metrics_by_episode(policy_dir):
    return {str(r["episode_id"]): r["metrics"] for r in results.read_records(policy_dir)}


def test_two_shards_merge_to_the_one_shard_run(tmp_path):
    one = evaluate(EvalConfig(out=tmp_path / "one", policies=("oracle", "random"), **FAST))
    for rank in (0, 1):
        evaluate(EvalConfig(out=tmp_path / "two", policies=("oracle", "random"), rank=rank, world_size=2, **FAST))
    for policy in ("oracle", "random"):
        merged = results.merge(tmp_path / "two" / policy)
        assert merged == pytest.approx({k: v for k, v in one[policy].items() if k != "run"}, nan_ok=True)
        assert metrics_by_episode(tmp_path / "two" / policy) == metrics_by_episode(tmp_path / "one" / policy)
        shard_files = sorted((tmp_path / "two" / policy).glob("episodes.rank*.jsonl"))
        assert [f.name for f in shard_files] == ["episodes.rank0.jsonl", "episodes.rank1.jsonl"]
    assert one["oracle"]["success"] == 1.0 and one["oracle"]["episodes"] == 8


def test_resume_skips_recorded_episodes_and_cuts_a_torn_line(tmp_path):
    cfg = EvalConfig(out=tmp_path, policies=("oracle",), limit=3, **FAST)
    evaluate(cfg)
    path = tmp_path / "oracle" / "episodes.rank0.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1]) + "\n" + lines[1][:40])  # episode 2 torn mid-write, episode 3 lost
    summary = evaluate(cfg)
    ids = [r["episode_id"] for r in results.read_records(tmp_path / "oracle")]
    assert sorted(map(str, ids)) == sorted({str(i) for i in ids}) and len(ids) == 3
    assert summary["oracle"]["episodes"] == 3 and summary["oracle"]["success"] == 1.0


def test_duplicate_records_are_an_error(tmp_path):
    d = tmp_path / "s2"
    d.mkdir()
    rec = {"episode_id": 1, "metrics": {"success": 1.0}}
    (d / "episodes.rank0.jsonl").write_text(json.dumps(rec) + "\n")
    (d / "episodes.rank1.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="twice"):
        results.merge(d)


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "internvla_s2_node.evaluation.cli", "--policy", "oracle", "--out", str(out),
           "--size", "160x120", "--no-maps", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard = out / "oracle" / "episodes.rank0.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (shard.exists() and shard.read_text().count("\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = shard.read_text().count("\n")
    assert 2 <= done_before < 8, "the run must be killed mid-way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    ids = [str(r["episode_id"]) for r in results.read_records(out / "oracle")]
    assert len(ids) == 8 and len(set(ids)) == 8
    summary = json.loads((out / "oracle" / "summary.json").read_text())
    assert summary["episodes"] == 8 and summary["success"] == 1.0


def test_table_and_config_validation(tmp_path):
    table = format_table({"oracle": {"episodes": 2, "success": 1.0, "spl": 0.9, "distance_to_goal": 0.4,
                                     "oracle_success": 1.0, "ndtw": float("nan"), "steps": 10}})
    assert "| oracle | 2 | 1.00 | 0.90 | 0.40 | 1.00 | - | 10.00 | - |" in table
    with pytest.raises(ValueError, match="habitat backend needs"):
        EvalConfig(out=tmp_path, backend="habitat")
    with pytest.raises(ValueError, match="rank"):
        EvalConfig(out=tmp_path, rank=2, world_size=2)
    with pytest.raises(ValueError, match="policies"):
        EvalConfig(out=tmp_path, policies=("greedy",))


def test_ros_args_go_to_the_bridge_in_external_mode_only(capsys):
    from internvla_s2_node.evaluation.cli import config_from_args, parse_args, split_ros_args

    argv, ros_args = split_ros_args(["--s2-mode", "external", "--out", "o", "--ros-args", "-r", "__ns:=/robot1"])
    assert argv == ["--s2-mode", "external", "--out", "o"] and ros_args == ["--ros-args", "-r", "__ns:=/robot1"]
    assert config_from_args(parse_args(argv, ros_args), ros_args).ros_args == tuple(ros_args)
    with pytest.raises(UsageError, match="--s2-mode external only"):
        parse_args(["--out", "o"], ["--ros-args", "-r", "__ns:=/robot1"])


def test_table_reports_how_many_episodes_upstreams_aggregation_rules_touched():
    """InternNav habitat_vln_evaluator.py:215 (NaN SPL -> 0) and :218-219 (non-finite NE dropped)."""
    table = format_table({"s2": {"episodes": 3.0, "success": 0.0, "spl": 0.0, "spl_nonfinite_as_zero": 1.0,
                                 "distance_to_goal_nonfinite_dropped": 2.0}})
    assert "s2: 1 episode(s) with non-finite SPL counted as 0, 2 with non-finite NE left out" in table
    assert "counted as 0" not in format_table({"oracle": {"episodes": 1.0, "success": 1.0}})


def test_upstream_loop_switch_and_a_skipped_recording_keeps_the_episode(tmp_path):
    """--upstream-loop sets LoopConfig.upstream_evaluator; an oracle episode that cannot be recorded (it ran
    out of steps before STOP) keeps its result, with the reason, instead of ending the run."""
    from internvla_s2_node.evaluation.cli import config_from_args, parse_args

    args = parse_args(["--out", str(tmp_path), "--policy", "oracle", "--upstream-loop"])
    assert config_from_args(args).upstream_loop is True
    summary = evaluate(EvalConfig(out=tmp_path / "rec", policies=("oracle",), limit=1, max_steps=2,
                                  record=str(tmp_path / "data"), **FAST))
    assert summary["oracle"]["episodes"] == 1
    (record,) = results.read_records(tmp_path / "rec" / "oracle")
    assert record["recording"] is None and "did not end with STOP" in record["recording_skipped"]


def test_each_map_is_titled_with_policy_metrics_and_instruction(tmp_path, monkeypatch):
    from internvla_s2_node.sim import viz

    titles = []
    real = viz.plot_episode
    monkeypatch.setattr(viz, "plot_episode", lambda *a, title=None, **k: (titles.append(title), real(*a, title=title, **k))[1])
    evaluate(EvalConfig(out=tmp_path, policies=("oracle",), limit=1, **dict(FAST, maps=True)))
    (title,) = titles
    (record,) = results.read_records(tmp_path / "oracle")
    assert title.startswith("oracle episode ") and "SR 1" in title and " NE " in title
    instruction_words = title.split("\n", 1)[1].split()
    assert len(instruction_words) >= 5  # the wrapped instruction under the metrics line
    assert (tmp_path / "oracle" / "maps" / f"episode_{record['episode_id']}.png").is_file()


def test_s2_decisions_by_kind_are_counted_from_the_records_and_shown_under_the_table(tmp_path):
    metrics = {"success": 1.0, "spl": 1.0, "distance_to_goal": 0.5, "oracle_success": 1.0, "ndtw": 0.9}
    writer = results.ResultsWriter(tmp_path / "s2", 0)
    # 7 calls: a pixel goal (2 calls), 4 action lists, STOP; then 3 calls: a pixel goal and an action list, no STOP
    writer.append({"episode_id": 0, "reason": "stop", "policy_calls": 7, "waypoints": [[1.0, 2.0, 0.0]],
                   "s2_latency_s": [0.1] * 7, "metrics": metrics})
    writer.append({"episode_id": 1, "reason": "max_steps", "policy_calls": 3, "waypoints": [[1.0, 2.0, 0.0]],
                   "s2_latency_s": [0.1] * 3, "metrics": metrics})
    summary = results.merge(tmp_path / "s2")
    assert (summary["s2_decisions"], summary["s2_pixel_goals"], summary["s2_stops"], summary["s2_action_lists"]) == (10, 2, 1, 5)
    table = format_table({"s2": summary})
    assert "s2: 10 S2 calls: 2 pixel goals (each a ↓ call and a look-down turn), 1 STOPs, 5 action lists or other" in table
    oracle = results.ResultsWriter(tmp_path / "oracle", 0)
    oracle.append({"episode_id": 0, "reason": "stop", "policy_calls": 40, "waypoints": [], "metrics": metrics})
    assert "s2_decisions" not in results.merge(tmp_path / "oracle")  # not an S2 run: no latencies, no decision kinds
