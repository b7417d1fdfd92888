"""Simulated robot: robot.launch.py (s2_node with config/sim.yaml on top) plus an evaluation driving it.

    ros2 launch internvla_s2 sim.launch.py out:=runs/sim [params_file:=<file>] [limit:=2] \
        [backend:=habitat episodes:=<val_unseen.json.gz> scenes_dir:=<scene_datasets>]

Every argument of robot.launch.py applies. The evaluation process
(``internvla-s2-eval --s2-mode external``, its bridge node named ``sim_bridge``) publishes
the simulator's observations on the relative names the S2 node uses (image, depth,
camera_info, odom, instruction), runs the episodes one after another and writes results
under ``out``. Empty arguments keep internvla-s2-eval's own defaults.

Both processes use the Fast DDS profile ``dds_profile`` (default: the packaged
config/fastdds_large_frames.xml, without which most 640x480 frames are lost between them).
Rendering is headless unless MUJOCO_GL is set (the evaluation picks EGL, else OSMesa).
When the evaluation ends the launch ends: exit code 0 if it succeeded, 1 (with the
evaluation's code in the log) if it failed. Humble-compatible launch API only.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction,
                            RegisterEventHandler, Shutdown)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from internvla_s2_node.ros.launch_util import dds_env

PACKAGE = "internvla_s2"
HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_OPTIONS = ("out", "backend", "episodes", "scenes_dir", "max_steps", "limit")
DDS_PROFILE = "config/fastdds_large_frames.xml"


class EvaluationFailed(RuntimeError):
    pass


def end_with_evaluation(event, context):
    """The evaluation is what this launch is for: when it exits, shut everything down; fail if it failed
    (an exception in an event handler makes ``ros2 launch`` exit 1 after shutting down)."""
    if getattr(context, "is_shutdown", False):  # Ctrl-C, or the launch ending otherwise: not the evaluation's failure
        return None
    if event.returncode != 0:
        raise EvaluationFailed(f"the evaluation (internvla-s2-eval) exited with code {event.returncode}; "
                               "its last lines above say why")
    return [LogInfo(msg="the evaluation finished: shutting down"), Shutdown(reason="the evaluation finished")]


def evaluation(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    options = ["--s2-mode", "external"]
    for name in EVAL_OPTIONS:
        if get(name):
            options += ["--" + name.replace("_", "-"), get(name)]
    node = Node(package=PACKAGE, executable="internvla-s2-eval", name="sim_bridge", namespace=get("namespace"),
                output="screen", arguments=options + ["--ros-args", "--log-level", get("log_level")],
                additional_env=dds_env(get("dds_profile"), get_package_share_directory(PACKAGE)))
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=end_with_evaluation))]


def generate_launch_description():
    sim_params = os.path.join(get_package_share_directory(PACKAGE), "config", "sim.yaml")
    arguments = [DeclareLaunchArgument(name, default_value="runs/sim" if name == "out" else "",
                                       description=f"internvla-s2-eval --{name.replace('_', '-')}")
                 for name in EVAL_OPTIONS]
    arguments.append(DeclareLaunchArgument("dds_profile", default_value=DDS_PROFILE,
                                           description="Fast DDS XML profile of both processes (empty: the environment's)"))
    robot = IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, "robot.launch.py")),
                                     launch_arguments={"overrides_file": sim_params,
                                                       "dds_profile": LaunchConfiguration("dds_profile")}.items())
    return LaunchDescription(arguments + [robot, OpaqueFunction(function=evaluation)])
