"""robot.launch.py under real ROS 2 launch (launch_pytest), from the built and sourced colcon overlay.

Needs launch_pytest (a ROS distribution, or the ROS 2 launch kit that scripts/test.sh installs
when ../shared/ros2-launch-kit exists) and ``internvla_s2`` in the ament index (ros2_ws built
and its install/setup.bash sourced); skipped with the reason otherwise. The launches run the
installed launch files with tiny random-weight checkpoints (``tiny:<arch>``): they check the
plumbing (lifecycle, topics, parameters), not navigation. tests/test_launch_files.py checks the
launch files without ROS launch; tests/test_launch_cli.py runs ``ros2 launch`` itself (params-file
backbone swap, Ctrl-C, sim.launch.py).
"""

from __future__ import annotations

import json
import pathlib
import time

import pytest

launch_pytest = pytest.importorskip("launch_pytest", reason="launch_pytest is not installed (ROS 2 launch kit)")
from package_info import installed_share  # noqa: E402

SHARE = installed_share()

from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402

import ros_helpers as T  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[1]
DOMAIN_ROBOT = domain("launch_pytest")
LOAD_TIMEOUT_S = 180.0  # tiny checkpoint built (first use) and loaded on a busy 2-core machine


def robot_launch(domain: int, **arguments: str) -> LaunchDescription:
    return LaunchDescription([
        SetEnvironmentVariable("ROS_DOMAIN_ID", str(domain)),
        SetEnvironmentVariable("OMP_NUM_THREADS", "1"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(SHARE / "launch" / "robot.launch.py")),
                                 launch_arguments=arguments.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


def lifecycle_state(probe, node: str) -> str:
    client = probe.create_client(GetState, f"{node}/get_state")
    try:
        if not client.wait_for_service(timeout_sec=10):
            return "no get_state service"
        future = client.call_async(GetState.Request())
        return future.result().current_state.label if T.wait_for(future.done, 10) else "timeout"
    finally:
        probe.destroy_client(client)


def wait_active(probe, node: str) -> dict:
    """Diagnostics of ``node`` once it reports a loaded backbone; asserts the lifecycle state is active."""
    diag = probe.wait_diagnostics(lambda d: d.get("state") == "active" and d.get("backbone"), timeout=LOAD_TIMEOUT_S)
    assert diag, f"{node} reported no backbone within {LOAD_TIMEOUT_S:.0f} s: {probe.diagnostics()}"
    assert T.wait_for(lambda: lifecycle_state(probe, node) == "active", 30), lifecycle_state(probe, node)
    return diag


# ------------------------------------------------------------------ robot.launch.py, defaults
@launch_pytest.fixture(scope="module")
def default_robot():
    return robot_launch(DOMAIN_ROBOT)


@pytest.fixture(scope="module")
def robot_probe():
    with T.probe_on(DOMAIN_ROBOT, "/s2_node") as probe:
        yield probe


def test_overlay_is_this_checkout():
    """The sourced overlay installs this checkout's launch files (else rebuild ros2_ws)."""
    for name in ("robot.launch.py", "sim.launch.py"):
        assert (SHARE / "launch" / name).read_text() == (ROOT / "launch" / name).read_text(), \
            f"{SHARE} is stale or another checkout's: colcon build ros2_ws again and source it"


@pytest.mark.launch(fixture=default_robot)
def test_robot_launch_reaches_active_with_the_default_tiny_checkpoint(robot_probe):
    diag = wait_active(robot_probe, "/s2_node")
    assert diag["backbone"] == "qwen3_vl"  # config/robot.yaml: model_path tiny:qwen3_vl


@pytest.mark.launch(fixture=default_robot)
def test_a_frame_and_an_instruction_give_a_decision(robot_probe):
    wait_active(robot_probe, "/s2_node")
    robot_probe.instruct("walk to the kitchen and stop at the table")
    assert T.wait_for(robot_probe.matched, 30), "the probe's publishers did not match the node's subscriptions"
    stamps = []
    deadline = time.monotonic() + 120
    while not robot_probe.get("decision") and time.monotonic() < deadline:
        stamps.append(round(time.time(), 6))
        robot_probe.send_frame(stamps[-1])
        T.wait_for(lambda: robot_probe.get("decision"), 0.5)
    decisions = [json.loads(m.data) for m in robot_probe.get("decision")]
    assert decisions, f"no decision on /s2_node/decision for {len(stamps)} frames: {robot_probe.diagnostics()}"
    d = decisions[0]
    stamp = d["stamp"]["sec"] + d["stamp"]["nanosec"] * 1e-9
    assert any(abs(stamp - s) < 1e-5 for s in stamps), (stamp, stamps)  # the decision names one of our frames
    assert d["kind"] in {"waypoint", "actions", "stop", "look_down", "none"} and d["step_s"] > 0
    assert robot_probe.get("raw_output"), "raw_output is published with every decision"
