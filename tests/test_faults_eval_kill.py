"""Fault: the S2 node process is SIGKILLed mid-episode during a simulated evaluation.

``internvla-s2-eval --policy s2 --s2-mode process`` runs ``s2_node`` as a child. The child is
killed once the first episode has had decisions; the bridge fails that episode (reason
``policy_failure`` with the failure text), fails the remaining episodes fast (the dead child is
noticed; no ``--s2-timeout`` wait each), and the run ends normally with every episode recorded once.
(Killing the evaluation runner itself is tests/test_eval_runner.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
psutil = pytest.importorskip("psutil")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from internvla_s2_node.ros.qos import reliable_qos  # noqa: E402
from ros_helpers import biased_checkpoint, wait_for  # noqa: E402
from internvla_s2_node.sim import results  # noqa: E402
from processes import s2_child  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


DOMAIN_ID = domain("faults_eval_kill")
EPISODES, TIMEOUT_S = 4, 8.0


def test_s2_node_killed_mid_episode(tmp_path):
    from internvla_s2_node.core.tiny import default_tiny_checkpoint

    model = biased_checkpoint(default_tiny_checkpoint("qwen3_vl"), tmp_path / "forward", "forward")
    out = tmp_path / "run"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1",
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "internvla_s2_node.evaluation.cli", "--policy", "s2", "--s2-mode", "process",
           "--model", str(model), "--out", str(out), "--size", "160x120", "--quiet", "--no-maps",
           "--s2-timeout", str(TIMEOUT_S), "--limit", str(EPISODES), "--max-steps", "400"]
    log = tmp_path / "eval.log"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    listener = rclpy.create_node("kill_watch", context=ctx)
    decisions = []
    listener.create_subscription(String, "/s2_node/decision", lambda m: decisions.append(json.loads(m.data)),
                                 reliable_qos(100))
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(listener)
    threading.Thread(target=executor.spin, daemon=True).start()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
    shard = out / "s2" / "episodes.rank0.jsonl"
    try:
        assert wait_for(lambda: len(decisions) >= 3, 180), log.read_text()[-3000:]
        child = s2_child(proc.pid)
        assert child is not None, "no s2_node child process"
        assert not shard.exists() or shard.read_text().strip() == "", "the first episode must still be running"
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=120)
        after_kill = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        executor.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=ctx)
    text = log.read_text()
    assert code == 1, text[-3000:]  # every episode failed: the run says so (issue 17 item 6)
    assert f"{EPISODES} of {EPISODES} s2 episodes failed" in text.strip().splitlines()[-1], text[-3000:]
    records = results.read_records(out / "s2")
    ids = [str(r["episode_id"]) for r in records]
    assert len(ids) == EPISODES and len(set(ids)) == EPISODES, ids
    first, rest = records[0], records[1:]
    assert first["reason"] == "policy_failure" and first["steps"] > 0  # killed mid-episode, after real steps
    assert "exited with code -9" in first["failure"] or "no S2 decision" in first["failure"], first["failure"]
    for r in rest:
        assert r["reason"] == "policy_failure" and r["steps"] == 0
        assert "exited with code -9" in r["failure"], r["failure"]
    assert after_kill < TIMEOUT_S * 2, f"took {after_kill:.1f} s after the kill: not failing fast"
    summary = json.loads((out / "summary.json").read_text())["s2"]
    assert summary["episodes"] == EPISODES and summary["success"] == 0.0
    print(f"\nkilled after {len(decisions)} decisions; run ended {after_kill:.1f} s later; failures: "
          + "; ".join(sorted({r['failure'] for r in records})))
