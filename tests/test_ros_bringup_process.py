"""``internvla-s2-bringup --action-executor`` in its own process: frames in, cmd_vel out, in a namespace.

The tiny checkpoint is biased to answer FORWARD (ros_helpers.biased_checkpoint), so the
whole path image -> model -> ~/actions -> action_executor -> cmd_vel runs for real.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("transformers")

from geometry_msgs.msg import Twist  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

import ros_helpers as T  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


DOMAIN_ID = domain("ros_bringup_process")


def test_bringup_runs_s2_node_and_action_executor_in_one_process(tmp_path):
    from internvla_s2_node.core.tiny import default_tiny_checkpoint

    ckpt = T.biased_checkpoint(default_tiny_checkpoint("qwen3_vl"), tmp_path / "forward", "forward")
    params = tmp_path / "params.yaml"
    params.write_text(f"/**/s2_node:\n  ros__parameters:\n    model_path: \"{ckpt}\"\n    device: cpu\n"
                      "    max_new_tokens: 3\n    num_history: 2\n"
                      "/**/action_executor:\n  ros__parameters:\n    use_odometry: false\n    max_linear_speed: 0.2\n")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    probe = T.Probe(target="/robot1/s2_node", namespace="robot1", context=ctx)
    twists: list[Twist] = []
    probe.create_subscription(Twist, "cmd_vel", twists.append, 100)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", OMP_NUM_THREADS="1")
    exe = pathlib.Path(sys.executable).parent / "internvla-s2-bringup"
    log = tmp_path / "bringup.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "--action-executor", "--ros-args", "--params-file", str(params),
                                 "-r", "__ns:=/robot1"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        assert T.wait_for(probe.matched, 60), log.read_text()[-3000:]
        probe.instruct("walk forward")
        for _ in range(100):
            probe.send_frame(time.time())
            if T.wait_for(lambda: twists, 0.1, period=0.02):
                break
        assert twists, log.read_text()[-3000:]
        assert set(probe.get("actions")[0].data) == {1}
        assert all(0.0 <= t.linear.x <= 0.2 and t.angular.z == 0.0 for t in twists)
        assert any(t.linear.x > 0 for t in twists)
    finally:
        code = T.stop_process(proc)
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown(context=ctx)
    assert code == 0, log.read_text()[-3000:]
