"""Finding the S2 node among an evaluation's child processes (tests that signal or kill it)."""

from __future__ import annotations

import psutil

S2_NODE_MODULE = "internvla_s2_node.ros.s2_node"


def s2_child(pid: int):
    """The S2 node process under ``pid``, or None. A child may exit between the listing and the
    reading of its command line; it is then not the node we wait for."""
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if S2_NODE_MODULE in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            pass
    return None
