"""Command lines of the ROS programs: ``--help`` before anything loads, params files checked up front.

A node's own options come before ``--ros-args``; everything after it is rclpy's (``--params-file``,
``-p name:=value``, ``-r from:=to``). Nothing here imports rclpy, so ``--help`` answers at once.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import yaml

from ..cli.errors import ArgumentParser, UsageError

ROS_ARGS_HELP = (
    "ROS arguments follow --ros-args, e.g. --ros-args --params-file config/robot.yaml -p device:=cpu "
    "-r image:=/camera/color/image_raw -r __ns:=/robot1 (parameters: config/robot.yaml)"
)


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(own options, ROS arguments) of ``argv`` without the program name."""
    args = list(argv)
    if "--ros-args" not in args:
        return args, []
    i = args.index("--ros-args")
    return args[:i], args[i:]


def parser(prog: str, doc: str | None) -> ArgumentParser:
    """Parser whose help is the module docstring's first paragraph and the ROS arguments."""
    description = (doc or "").strip().split("\n\n")[0]
    return ArgumentParser(prog=prog, description=description, epilog=ROS_ARGS_HELP)


def parse_help(argv: Sequence[str], prog: str, doc: str | None) -> None:
    """For nodes without options of their own: answer --help, refuse unknown options, check params files."""
    own, ros = split_ros_args(list(argv)[1:])
    parser(prog, doc).parse_args(own)
    check_params_files(ros)


def params_files(ros_args: Sequence[str]) -> list[str]:
    files = []
    for flag, value in zip(ros_args, list(ros_args)[1:]):
        if flag == "--params-file":
            files.append(value)
    return files


def check_params_files(ros_args: Sequence[str]) -> None:
    """UsageError (one line) for a --params-file that is missing or not a ROS parameters YAML."""
    for name in params_files(ros_args):
        check_params_file(name)


def check_params_file(name: str | pathlib.Path) -> dict:
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
        raise UsageError(f"--params-file {name}: no such file; pass a YAML file like config/robot.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--params-file {name}: cannot read it ({exc})") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"--params-file {name}: not valid YAML{at} ({problem}); fix the file "
                         "(config/robot.yaml shows the layout)") from exc
    if not _is_parameters_tree(data):
        raise UsageError(f"--params-file {name}: expected 'NODE_NAME: {{ros__parameters: {{...}}}}' sections; "
                         "see config/robot.yaml")
    return data


def _is_parameters_tree(node) -> bool:
    """``{name: {ros__parameters: {...}}}``, node names possibly nested under namespaces."""
    if not isinstance(node, dict) or not node:
        return False
    if "ros__parameters" in node:
        return node["ros__parameters"] is None or isinstance(node["ros__parameters"], dict)
    return all(_is_parameters_tree(child) for child in node.values())
