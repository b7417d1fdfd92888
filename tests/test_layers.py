"""The floors hold: the ROS-free layers import without ROS.

Every module of core/, sim/, train/ and evaluation/ (except ``evaluation.s2_session``, the S2 node
over ROS 2, imported only when the S2 policy is evaluated) is imported in a fresh interpreter in
which ``rclpy``, ``rosidl*``, ``launch*``, ``ament_index_python`` and every ``*_msgs`` / ``*_srvs``
package cannot be imported. Any attempt to import one fails the test, even when the module catches
the ImportError.
"""

from __future__ import annotations

import ast
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


# ------------------------------------------------------------------ import rules, read from the source
# What each layer of internvla_s2_node may import from the package (docs/ARCHITECTURE.md, "What each
# folder may import"). Imports inside functions count too: a lazy import is still a dependency.
MAY_IMPORT = {
    "cli.errors": set(),  # stdlib only: the one way every console script fails
    "core": {"cli.errors"},
    "train": {"core", "cli.errors"},
    "sim": {"core", "train"},  # train only in sim/recorder.py (recordings in the training layout)
    "ros": {"core", "sim", "cli.errors"},
    "evaluation": {"core", "sim", "train", "ros", "cli.errors"},
    "cli": {"core", "cli.errors"},  # cli/infer.py: internvla-s2-infer
}
ROS_ALLOWED = ("ros", "evaluation.s2_session")  # the only places that may import ROS packages


def is_ros_module(name: str) -> bool:
    top = name.split(".")[0]
    return top in ("rclpy", "launch", "launch_ros", "ament_index_python", "builtin_interfaces", "rcl_interfaces") \
        or top.startswith("rosidl") or top.endswith(("_msgs", "_srvs"))


def layer_of(module: str) -> str:
    """'core', 'sim', ... or 'cli.errors' for a module path inside internvla_s2_node."""
    parts = module.split(".")[1:]
    if parts[:2] == ["cli", "errors"]:
        return "cli.errors"
    return parts[0] if parts else ""


def imported_modules(path: pathlib.Path, module: str, source: str | None = None) -> list[str]:
    """Absolute names of every module ``path`` (module ``module``) imports, relative imports resolved."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # ``from . import x`` imports the submodule x; ``from .m import f`` imports m
            names += [f"{base}.{a.name}" for a in node.names] if not node.module else [base]
    return names


def rule_violations(path: pathlib.Path, source: str | None = None) -> list[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    own = layer_of(module)
    allowed = MAY_IMPORT[own] | {own}
    problems = []
    for name in imported_modules(path, module, source):
        if name.startswith("internvla_s2_node."):
            target = layer_of(name)
            if target not in allowed:
                problems.append(f"{module} imports {name} ({own} may import {sorted(MAY_IMPORT[own]) or 'nothing'})")
        elif is_ros_module(name) and not (own == "ros" or module.startswith("internvla_s2_node.evaluation.s2_session")):
            problems.append(f"{module} imports ROS ({name}); only ros/ and evaluation/s2_session.py may")
    return problems


def package_files() -> list[pathlib.Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.parent != PACKAGE]


def test_every_module_keeps_the_import_rules():
    files = package_files()
    layers = {layer_of(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in files}
    assert layers == set(MAY_IMPORT), f"a folder without a rule: {layers - set(MAY_IMPORT)}"
    problems = [v for p in files for v in rule_violations(p)]
    assert problems == [], "\n".join(problems)


def test_the_import_rules_catch_an_upward_import():
    """The check can fail: the evaluation's old place (sim/runner.py importing ros/sim_bridge.py) breaks it."""
    fake = PACKAGE / "sim" / "runner.py"
    src = "from ..ros.sim_bridge import s2_policy_session\nimport rclpy\nfrom . import loop\n"
    assert rule_violations(fake, src) == [
        "internvla_s2_node.sim.runner imports internvla_s2_node.ros.sim_bridge (sim may import ['core', 'train'])",
        "internvla_s2_node.sim.runner imports ROS (rclpy); only ros/ and evaluation/s2_session.py may",
    ]
    core_src = "def f():\n    from ..sim import loop\n"  # lazy imports count
    assert len(rule_violations(PACKAGE / "core" / "engine.py", core_src)) == 1
