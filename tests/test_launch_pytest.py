"""robot.launch.py under real ROS launch (launch_pytest), where a ROS distribution provides it.

launch, launch_ros and launch_pytest are not on PyPI, so this module is skipped in the
venv; tests/test_launch_files.py checks the launch files without them.
"""

from __future__ import annotations

import pathlib
import time

import pytest

launch_pytest = pytest.importorskip("launch_pytest", reason="launch_pytest not installable from PyPI")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

ROBOT_LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch" / "robot.launch.py"
CONFIG = pathlib.Path(__file__).resolve().parents[1] / "config" / "robot.yaml"


@launch_pytest.fixture
def robot_launch():
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(ROBOT_LAUNCH)),
                                 launch_arguments={"params_file": str(CONFIG), "namespace": "lt"}.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=robot_launch)
def test_s2_node_comes_up_and_reports_its_backbone():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("launch_test_listener", context=ctx)
    seen = []
    node.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                kv.value == "qwen3_vl" for a in seen for s in a.status for kv in s.values if kv.key == "backbone"):
            rclpy.spin_once(node, timeout_sec=0.5)
        assert any(s.name.endswith("s2_node") for a in seen for s in a.status)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
