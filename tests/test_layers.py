"""The floors hold: the ROS-free layers import without ROS.

Every module of core/, sim/, train/ and evaluation/ (except ``evaluation.s2_session``, the S2 node
over ROS 2, imported only when the S2 policy is evaluated) is imported in a fresh interpreter in
which ``rclpy``, ``rosidl*``, ``launch*``, ``ament_index_python`` and every ``*_msgs`` / ``*_srvs``
package cannot be imported. Any attempt to import one fails the test, even when the module catches
the ImportError.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "internvla_s2_node"
ROS_FREE = ("core", "sim", "train", "evaluation")
NEEDS_ROS = {"internvla_s2_node.evaluation.s2_session"}

PROBE = r'''
import importlib, importlib.abc, json, sys, traceback

ROS_TOPS = ("rclpy", "launch", "launch_ros", "ament_index_python", "builtin_interfaces", "rcl_interfaces")

def is_ros(name):
    top = name.split(".")[0]
    return top in ROS_TOPS or top.startswith("rosidl") or top.endswith(("_msgs", "_srvs"))

class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if is_ros(name):
            attempts.append((current, name))
            raise ImportError(f"{name} is blocked (a ROS-free module imports ROS)")
        return None

attempts, missing, current = [], {}, None
for name in [m for m in list(sys.modules) if is_ros(m)]:
    del sys.modules[name]
sys.meta_path.insert(0, BlockRos())
for current in json.loads(sys.argv[1]):
    try:
        importlib.import_module(current)
    except ImportError as exc:
        if not any(m == current for m, _ in attempts):
            missing[current] = str(exc)
print(json.dumps({"attempts": attempts, "missing": missing, "loaded": sorted(m for m in sys.modules if is_ros(m))}))
'''


def modules(folder: str) -> list[str]:
    names = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


def probe(names: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_ros_free_layers_import_without_ros():
    names = [m for folder in ROS_FREE for m in modules(folder) if m not in NEEDS_ROS]
    assert "internvla_s2_node.sim.loop" in names and "internvla_s2_node.evaluation.runner" in names
    out = probe(names)
    assert out["attempts"] == [], f"ROS imported by ROS-free modules: {out['attempts']}"
    assert out["loaded"] == []
    assert out["missing"] == {}, "modules that failed to import (heavy dependencies are imported lazily)"


def test_the_blocker_catches_a_ros_import():
    """The check can fail: a module that needs ROS is reported."""
    out = probe(["internvla_s2_node.ros.qos", "internvla_s2_node.evaluation.s2_session"])
    assert {m for m, _ in out["attempts"]} == {"internvla_s2_node.ros.qos", "internvla_s2_node.evaluation.s2_session"}
    assert out["attempts"][0][1] == "rclpy.qos" or out["attempts"][0][1].startswith("rclpy")
