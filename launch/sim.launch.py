"""Simulated robot: robot.launch.py (s2_node with config/sim.yaml on top) plus an evaluation driving it.

    ros2 launch internvla_s2 sim.launch.py out:=runs/sim [params_file:=<file>] \
        [backend:=habitat episodes:=<val_unseen.json.gz> scenes_dir:=<scene_datasets>]

Every argument of robot.launch.py applies. The evaluation process
(``internvla-s2-eval --s2-mode external``, its bridge node named ``sim_bridge``) publishes
the simulator's observations on the relative names the S2 node uses (image, depth,
camera_info, odom, instruction), runs the episodes one after another and writes results
under ``out``. Empty arguments keep internvla-s2-eval's own defaults.
Humble-compatible launch API only.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "internvla_s2"
HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_OPTIONS = ("out", "backend", "episodes", "scenes_dir", "max_steps", "limit")


def sim_bridge(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    options = ["--s2-mode", "external"]
    for name in EVAL_OPTIONS:
        if get(name):
            options += ["--" + name.replace("_", "-"), get(name)]
    return [Node(package=PACKAGE, executable="internvla-s2-eval", name="sim_bridge", namespace=get("namespace"),
                 output="screen", arguments=options + ["--ros-args", "--log-level", get("log_level")])]


def generate_launch_description():
    sim_params = os.path.join(get_package_share_directory(PACKAGE), "config", "sim.yaml")
    robot = IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, "robot.launch.py")),
                                     launch_arguments={"overrides_file": sim_params}.items())
    arguments = [DeclareLaunchArgument(name, default_value="runs/sim" if name == "out" else "",
                                       description=f"internvla-s2-eval --{name.replace('_', '-')}")
                 for name in EVAL_OPTIONS]
    return LaunchDescription(arguments + [robot, OpaqueFunction(function=sim_bridge)])
