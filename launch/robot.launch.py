"""InternVLA-N1 System-2 on a robot: s2_node (+ action_executor by argument).

    ros2 launch internvla_s2 robot.launch.py params_file:=<file> namespace:=robot1 \
        image:=/camera/color/image_raw depth:=/camera/aligned_depth_to_color/image_raw \
        camera_info:=/camera/color/camera_info odom:=/odom instruction:=/instruction

All node defaults live in config/robot.yaml (= the nodes' declared defaults); a
params_file only needs the overrides, e.g. config/qwen25vl_internvla_n1_s2.yaml.
Humble-compatible launch API only.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from internvla_s2_node.ros import launch_util
from internvla_s2_node.ros.launch_util import as_bool, node_parameters

PACKAGE = "internvla_s2"
TOPICS = ("image", "depth", "camera_info", "odom", "instruction", "cmd_vel")
# Seconds s2_node gets after SIGINT before launch escalates to SIGTERM (launch's default: 5). Releasing
# the model and ending the interpreter took 2-3 s with a tiny checkpoint, over 5 s on a busy machine.
S2_SIGTERM_TIMEOUT_S = "20"


def default_params_file():
    return os.path.join(get_package_share_directory(PACKAGE), "config", "robot.yaml")


def declare_arguments():
    return [
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="ROS parameters file (overrides of config/robot.yaml)"),
        DeclareLaunchArgument("overrides_file", default_value="",
                              description="optional second parameters file applied on top of params_file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("use_action_executor", default_value="false",
                              description="also run action_executor (actions/waypoint -> cmd_vel)"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument("dds_profile", default_value="",
                              description="Fast DDS XML profile for the nodes' processes, e.g. the packaged "
                                          "config/fastdds_large_frames.xml for uncompressed frames of 640x480 and "
                                          "up at camera rate (empty: the environment's)"),
    ] + [DeclareLaunchArgument(t, default_value=t, description=f"topic the '{t}' name is remapped to") for t in TOPICS]


def s2_node(context, extra_remaps=()):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    ns = get("namespace")
    params = node_parameters(get("params_file"), "s2_node", ns)
    if get("overrides_file"):
        params.update(node_parameters(get("overrides_file"), "s2_node", ns))
    params["use_sim_time"] = as_bool(get("use_sim_time"))
    remaps = [(t, get(t)) for t in ("image", "depth", "camera_info", "odom", "instruction")] + list(extra_remaps)
    return Node(package=PACKAGE, executable="s2_node", name="s2_node", namespace=ns, output="screen",
                parameters=[params], remappings=remaps, arguments=["--ros-args", "--log-level", get("log_level")],
                additional_env=dds_env(get("dds_profile")), sigterm_timeout=S2_SIGTERM_TIMEOUT_S)


def dds_env(profile: str) -> dict:
    return launch_util.dds_env(profile, get_package_share_directory(PACKAGE))


def action_executor(context):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    ns = get("namespace")
    params = node_parameters(get("params_file"), "action_executor", ns)
    params["use_sim_time"] = as_bool(get("use_sim_time"))
    return Node(package=PACKAGE, executable="action_executor", name="action_executor", namespace=ns, output="screen",
                parameters=[params], remappings=[("odom", get("odom")), ("cmd_vel", get("cmd_vel"))],
                arguments=["--ros-args", "--log-level", get("log_level")], additional_env=dds_env(get("dds_profile")))


def launch_setup(context, *args, **kwargs):
    nodes = [s2_node(context)]
    if as_bool(LaunchConfiguration("use_action_executor").perform(context)):
        nodes.append(action_executor(context))
    return nodes


def generate_launch_description():
    return LaunchDescription(declare_arguments() + [OpaqueFunction(function=launch_setup)])
