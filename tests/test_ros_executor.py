"""action_executor over real DDS, and the bringup (manual composition) node set."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import Twist  # noqa: E402
from internvla_s2_node.ros.executor import spinning  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import UInt8MultiArray  # noqa: E402

from internvla_s2_node.ros import bringup  # noqa: E402
import ros_helpers as T  # noqa: E402
from internvla_s2_node.ros.action_executor import ActionExecutor  # noqa: E402
from internvla_s2_node.ros.qos import reliable_qos  # noqa: E402
from internvla_s2_node.ros.s2_node import S2Node  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = pytest.mark.ros


DOMAIN_ID = domain("ros_executor")


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.shutdown(context=ctx)


def test_actions_become_bounded_cmd_vel_and_stop(context):
    params = [Parameter("use_odometry", value=False), Parameter("forward_step_m", value=0.1),
              Parameter("max_linear_speed", value=0.5), Parameter("max_angular_speed", value=1.0)]
    node = ActionExecutor(context=context, parameter_overrides=params)
    test = Node("executor_test", context=context)
    twists: list[Twist] = []
    test.create_subscription(Twist, "/cmd_vel", twists.append, reliable_qos(100))
    pub = test.create_publisher(UInt8MultiArray, "/s2_node/actions", reliable_qos(10))
    try:
        with spinning([node, test], num_threads=2, context=context):
            assert T.wait_for(lambda: pub.get_subscription_count() > 0 and node.count_publishers("/cmd_vel") > 0, 10)
            time.sleep(0.5)  # let the cmd_vel subscription match too
            pub.publish(UInt8MultiArray(data=bytes([1])))
            assert T.wait_for(lambda: any(t.linear.x > 0 for t in twists), 3)
            assert T.wait_for(lambda: twists and twists[-1].linear.x == 0.0 and not node.controller.busy, 3)
            moving = [t for t in twists if t.linear.x > 0]
            assert max(t.linear.x for t in moving) <= 0.5 and 2 <= len(moving) <= 8  # 0.1 m at 0.5 m/s, 20 Hz
            twists.clear()
            pub.publish(UInt8MultiArray(data=bytes([2, 2, 2])))  # 45 deg at 1 rad/s
            assert T.wait_for(lambda: any(t.angular.z > 0 for t in twists), 3)
            pub.publish(UInt8MultiArray(data=bytes([0])))  # STOP
            assert T.wait_for(lambda: not node.controller.busy and twists[-1].angular.z == 0.0, 3)
            assert "STOP" in node.controller.last_stop_reason
    finally:
        node.destroy_node()
        test.destroy_node()


def test_bringup_builds_the_node_set_with_ros_args(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("/**/s2_node:\n  ros__parameters:\n    seed: 7\n    autostart: false\n"
                      "/**/action_executor:\n  ros__parameters:\n    max_linear_speed: 0.1\n")
    ctx = rclpy.Context()
    argv = ["internvla-s2-bringup", "--action-executor", "--ros-args", "--params-file", str(params),
            "-r", "__ns:=/robot1"]
    opts = bringup.parse_args(argv)
    assert opts.action_executor and opts.threads == 4
    rclpy.init(args=argv, context=ctx, domain_id=DOMAIN_ID)
    extra = []
    try:
        nodes = bringup.build_nodes(opts, [lambda **kw: extra.append(Node("sim_bridge", **kw)) or extra[-1]],
                                    context=ctx)
        assert [type(n).__name__ for n in nodes] == ["S2Node", "ActionExecutor", "Node"]
        assert [n.get_fully_qualified_name() for n in nodes] == ["/robot1/s2_node", "/robot1/action_executor",
                                                                   "/robot1/sim_bridge"]
        assert nodes[0].get_parameter("seed").value == 7 and nodes[0].get_parameter("autostart").value is False
        assert nodes[1].get_parameter("max_linear_speed").value == 0.1
        assert isinstance(nodes[0], S2Node) and nodes[0]._state_label == "unconfigured"
        for n in nodes:
            n.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    assert not bringup.parse_args(["internvla-s2-bringup"]).action_executor
