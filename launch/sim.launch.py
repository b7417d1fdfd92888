"""Simulated robot: the simulator bridge (sim_bridge) plus robot.launch.py (s2_node, optional action_executor).

    ros2 launch internvla_s2 sim.launch.py [params_file:=<file>] [use_action_executor:=true] ...

Every argument of robot.launch.py applies (it is included as is). sim_bridge
publishes the simulator's observations on the relative names the S2 node uses
(image, depth, camera_info, odom, instruction) and takes its parameters from the
`sim_bridge:` section of params_file. Humble-compatible launch API only.
"""

import os

from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from internvla_s2_node.ros.launch_util import as_bool, node_parameters

PACKAGE = "internvla_s2"
HERE = os.path.dirname(os.path.abspath(__file__))


def sim_bridge(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    ns = get("namespace")
    params = node_parameters(get("params_file"), "sim_bridge", ns)
    params["use_sim_time"] = as_bool(get("use_sim_time"))
    return [Node(package=PACKAGE, executable="sim_bridge", name="sim_bridge", namespace=ns, output="screen",
                 parameters=[params], arguments=["--ros-args", "--log-level", get("log_level")])]


def generate_launch_description():
    robot = IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, "robot.launch.py")))
    # robot.launch.py declares the arguments (and their defaults) this function reads.
    return LaunchDescription([robot, OpaqueFunction(function=sim_bridge)])
