"""``internvla-s2-bringup``: the robot.launch.py node set without ROS launch.

All nodes run in this one process on one multi-threaded executor (manual
composition). ROS arguments work as for any node, e.g.::

    internvla-s2-bringup --action-executor --ros-args \\
        --params-file config/qwen3vl_s2.yaml -r image:=/camera/color/image_raw -r __ns:=/robot1

(the node defaults equal config/robot.yaml, so a params file only needs the
overrides; ``--ros-args`` remaps apply to every node in the process). Other code
(e.g. the simulated evaluation) adds nodes with ``main(extra_nodes=[factory, ...])``
or builds the set with :func:`build_nodes` and spins it with :func:`spin`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import rclpy

from ..cli.errors import guarded
from . import node_cli
from .executor import spin
from .s2_node import S2Node

PROG = "internvla-s2-bringup"

NodeFactory = Callable[..., "rclpy.node.Node"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options of this program (the ``--ros-args ...`` part is left to rclpy)."""
    argv = list(sys.argv if argv is None else argv)
    parser = node_cli.parser(PROG, __doc__)
    parser.add_argument("--action-executor", action="store_true",
                        help="also run action_executor (actions/waypoint -> cmd_vel); off by default")
    parser.add_argument("--threads", type=int, default=4, help="executor threads (default %(default)s)")
    own, ros = node_cli.split_ros_args(argv[1:])
    opts = parser.parse_args(own)
    node_cli.check_params_files(ros)
    return opts


def build_nodes(opts: argparse.Namespace, extra_nodes: Sequence[NodeFactory] = (), **node_kwargs) -> list:
    """The node set: s2_node, optionally action_executor, then ``extra_nodes`` (factories called with node_kwargs)."""
    nodes = [S2Node(**node_kwargs)]
    if opts.action_executor:
        from .action_executor import ActionExecutor

        nodes.append(ActionExecutor(**node_kwargs))
    nodes.extend(factory(**node_kwargs) for factory in extra_nodes)
    return nodes


@guarded(PROG)
def main(argv: Sequence[str] | None = None, extra_nodes: Sequence[NodeFactory] = ()) -> None:
    argv = list(sys.argv if argv is None else argv)
    opts = parse_args(argv)
    rclpy.init(args=argv)
    spin(build_nodes(opts, extra_nodes), num_threads=opts.threads)


if __name__ == "__main__":
    sys.exit(main())
