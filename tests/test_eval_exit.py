"""internvla-s2-eval's exit status and ROS domain (issue 17 items 6 and 7).

A run whose episodes failed (e.g. no S2 decision in time) writes its results and then exits 1
saying how many failed; the bridge of an external S2 node (sim.launch.py) uses the same domain
rule as that node, so it never moves to another domain on its own.
"""

from __future__ import annotations

import json
import signal

import pytest

import ros_domains
from internvla_s2_node.evaluation import cli
from internvla_s2_node.evaluation.runner import EvalConfig


@pytest.fixture
def fake_run(monkeypatch):
    """evaluate() replaced by one that writes the given episode records (no simulator, no ROS)."""
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # main() maps SIGTERM; keep pytest's handler
    monkeypatch.setattr(cli, "check_inputs", lambda cfg: None)

    def run(tmp_path, failures, capsys):
        def evaluate(cfg):
            folder = cfg.policy_dir("s2")
            folder.mkdir(parents=True)
            lines = [json.dumps({"episode_id": i, "failure": f}) for i, f in enumerate(failures)]
            (folder / "episodes.rank0.jsonl").write_text("\n".join(lines) + "\n")
            return {"s2": {"episodes": len(failures)}}

        monkeypatch.setattr(cli, "evaluate", evaluate)
        code = cli.main(["--out", str(tmp_path), "--policy", "s2", "--quiet"])
        return code, capsys.readouterr()

    return run


def test_failed_episodes_exit_1_and_say_how_many(tmp_path, fake_run, capsys):
    code, io = fake_run(tmp_path, ["", "no S2 decision within 120 s", "no S2 decision within 120 s"], capsys)
    assert code == 1
    assert io.err.strip().splitlines()[-1].startswith(
        "internvla-s2-eval: 2 of 3 s2 episodes failed (first: no S2 decision within 120 s); the results are written")
    assert (tmp_path / "summary.json").is_file() and "| s2 | 3 |" in io.out


def test_no_failed_episode_exits_0(tmp_path, fake_run, capsys):
    code, io = fake_run(tmp_path, ["", ""], capsys)
    assert code == 0 and "failed" not in io.err


def test_external_bridge_keeps_the_environments_domain(monkeypatch):
    pytest.importorskip("rclpy")
    from internvla_s2_node.evaluation.s2_session import session_domain_id

    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    external = EvalConfig(out="x", s2_mode="external")
    assert session_domain_id(external) is None  # was 42: the bridge waited on 42 for a node on 0
    chosen = ros_domains.domain("default")  # any id: session_domain_id only reads the config, no DDS traffic
    assert session_domain_id(EvalConfig(out="x", s2_mode="external", domain_id=chosen)) == chosen
    assert session_domain_id(EvalConfig(out="x", s2_mode="process", rank=1, world_size=2)) == 43  # own shard domain
    monkeypatch.setenv("ROS_DOMAIN_ID", "12")
    assert session_domain_id(external) is None
    assert session_domain_id(EvalConfig(out="x", s2_mode="inprocess")) == 12
