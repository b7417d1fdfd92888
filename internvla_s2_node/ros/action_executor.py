"""``action_executor``: turns the S2 node's ``actions``/``waypoint`` into ``cmd_vel`` (optional, off by default).

Subscribes ``s2_node/actions`` (std_msgs/UInt8MultiArray), ``s2_node/waypoint``
(geometry_msgs/PoseStamped, odometry frame) and ``odom``; publishes
geometry_msgs/Twist on ``cmd_vel`` while moving and a zero Twist when it stops.
All names are relative, so a namespace or remapping applies to them. The control
logic is :mod:`internvla_s2_node.ros.controller`.
"""

from __future__ import annotations

import math
import sys

import rclpy
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from ..cli.errors import guarded
from ..core.geometry import yaw_of
from . import conversions as conv
from . import params
from .controller import Command, Controller, ControllerConfig, Pose2D
from .executor import spin
from .node_cli import parse_help
from .qos import reliable_qos, sensor_qos

STOP_REPEATS = 3  # zero Twists sent when stopping (cmd_vel may be best effort downstream)


class ActionExecutor(Node):
    def __init__(self, node_name: str = "action_executor", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        params.declare(self, params.EXECUTOR_SPECS)
        params.warn_unknown(self, params.EXECUTOR_SPECS)
        self._specs = params.specs_by_name(params.EXECUTOR_SPECS)
        self._p = params.values(self, params.EXECUTOR_SPECS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.controller = Controller(ControllerConfig.from_params(self._p))
        self._pose: Pose2D | None = None
        self._pose_time: float | None = None
        self._odom_frame = ""
        self._stop_left = 0
        self.last_status = "idle"
        self._cmd_pub = self.create_publisher(Twist, "cmd_vel", reliable_qos(10))
        self.create_subscription(UInt8MultiArray, "s2_node/actions", self._on_actions, reliable_qos(10))
        self.create_subscription(PoseStamped, "s2_node/waypoint", self._on_waypoint, reliable_qos(10))
        self.create_subscription(Odometry, "odom", self._on_odom, sensor_qos())
        self.create_timer(1.0 / self._p["control_rate_hz"], self._tick)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_set_parameters(self, changes):
        from rcl_interfaces.msg import SetParametersResult

        for p in changes:
            reason = params.check_change(self._specs.get(p.name), p.value, False, "running")
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for p in changes:
            if p.name in self._specs:
                self._p[p.name] = p.value
        self.controller.cfg = ControllerConfig.from_params(self._p)
        return SetParametersResult(successful=True)

    def _on_actions(self, msg: UInt8MultiArray) -> None:
        codes = list(msg.data)
        problem = self.controller.set_actions(codes)
        if problem:
            self.get_logger().info(problem)
            self._request_stop()
        else:
            self.get_logger().debug(f"actions {codes}")

    def _on_waypoint(self, msg: PoseStamped) -> None:
        if self._odom_frame and msg.header.frame_id and msg.header.frame_id != self._odom_frame:
            self.get_logger().warn(f"waypoint in frame {msg.header.frame_id!r}, odometry in {self._odom_frame!r}: ignored")
            return
        p = msg.pose.position
        problem = self.controller.set_waypoint(p.x, p.y, self._now())
        if problem:
            self.get_logger().warn(f"waypoint ignored: {problem}")

    def _on_odom(self, msg: Odometry) -> None:
        try:
            t = conv.odometry_to_matrix(msg)
        except conv.BadMessage as exc:
            self.get_logger().warn(f"odometry skipped: {exc}", throttle_duration_sec=5.0)
            return
        self._pose = Pose2D(float(t[0, 3]), float(t[1, 3]), yaw_of(t))
        self._pose_time = self._now()
        self._odom_frame = msg.header.frame_id

    def _request_stop(self) -> None:
        self._stop_left = STOP_REPEATS

    def _tick(self) -> None:
        now = self._now()
        age = None if self._pose_time is None else now - self._pose_time
        cmd = self.controller.update(now, self._pose, age)
        if cmd.status != self.last_status and cmd.status.startswith("stopped"):
            self.get_logger().info(cmd.status)
        self.last_status = cmd.status
        if cmd.moving:
            self._publish(cmd)
            self._stop_left = STOP_REPEATS  # zeros follow once it stops
        elif self._stop_left > 0:
            self._publish(Command())
            self._stop_left -= 1

    def _publish(self, cmd: Command) -> None:
        twist = Twist()
        twist.linear.x = float(cmd.linear) if math.isfinite(cmd.linear) else 0.0
        twist.angular.z = float(cmd.angular) if math.isfinite(cmd.angular) else 0.0
        self._cmd_pub.publish(twist)


@guarded("action_executor")
def main(args=None) -> None:
    argv = list(sys.argv if args is None else args)
    parse_help(argv, "action_executor", __doc__)
    rclpy.init(args=argv)
    spin([ActionExecutor()], num_threads=2)


if __name__ == "__main__":
    sys.exit(main())
