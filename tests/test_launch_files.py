"""Launch files, checked without ROS launch (not installable from PyPI; see test_launch_pytest.py).

1. Static (ast): each file parses, names only executables setup.py installs, passes
   only parameter names the nodes declare, declares the topic remapping arguments,
   and repeats no parameter default.
2. Executed against small stand-ins for the launch/launch_ros API: the Node actions
   they produce (executable, name, namespace, parameters, remappings) are right.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import sys
import types

import pytest

pytest.importorskip("rclpy")

from internvla_s2_node.ros import params  # noqa: E402
from package_info import console_scripts  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
TOPIC_ARGS = {"image", "depth", "camera_info", "odom", "instruction", "cmd_vel"}
DECLARED = {"s2_node": {s.name for s in params.S2_SPECS}, "action_executor": {s.name for s in params.EXECUTOR_SPECS}}
EVERY_NODE = {"use_sim_time"}


def calls(tree, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name):
                yield node


def kwarg(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def literal_parameter_names(tree) -> set[str]:
    """Names set literally: ``params["x"] = ...`` and keys of dict literals inside ``parameters=[...]``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant):
                    names.add(t.slice.value)
    for call in calls(tree, "Node"):
        value = kwarg(call, "parameters")
        for node in ast.walk(value) if value is not None else ():
            if isinstance(node, ast.Dict):
                names |= {k.value for k in node.keys if isinstance(k, ast.Constant)}
    return names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_static_checks(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    executables = {ast.literal_eval(kwarg(c, "executable")) for c in calls(tree, "Node")}
    assert executables and executables <= console_scripts(), executables - console_scripts()
    ours = set().union(*(DECLARED.get(e, set()) for e in executables))
    assert literal_parameter_names(tree) <= ours | EVERY_NODE
    constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for spec in params.S2_SPECS + params.EXECUTOR_SPECS:  # no default repeated (except trivial ones)
        if isinstance(spec.default, str) and spec.default not in ("auto", ""):
            assert spec.default not in constants, f"{path.name} repeats the default of {spec.name}"


def test_robot_launch_declares_the_documented_arguments():
    tree = ast.parse((ROOT / "launch" / "robot.launch.py").read_text())
    src = (ROOT / "launch" / "robot.launch.py").read_text()
    declared = {ast.literal_eval(c.args[0]) for c in calls(tree, "DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)}
    assert {"params_file", "namespace", "use_sim_time", "use_action_executor"} <= declared
    assert TOPIC_ARGS <= declared | set(ast.literal_eval(next(
        n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "TOPICS")))
    assert '"robot.yaml"' in src


# ------------------------------------------------------------------ execution with stand-ins
class _Sub:
    def __init__(self, name, default=None):
        self.name, self.default = name, default

    def perform(self, context):
        return context.launch_configurations.get(self.name, self.default)


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def stand_ins(monkeypatch, share: pathlib.Path):
    mods = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch.conditions", "launch.launch_description_sources",
        "launch.event_handlers", "launch_ros", "launch_ros.actions", "ament_index_python", "ament_index_python.packages")}
    mods["launch"].LaunchDescription = lambda entities: list(entities)
    acts = mods["launch.actions"]
    acts.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Action,), {})
    acts.OpaqueFunction = type("OpaqueFunction", (_Action,), {})
    acts.IncludeLaunchDescription = type("IncludeLaunchDescription", (_Action,), {})
    for name in ("LogInfo", "RegisterEventHandler", "Shutdown"):
        setattr(acts, name, type(name, (_Action,), {}))
    mods["launch.event_handlers"].OnProcessExit = type("OnProcessExit", (_Action,), {})
    mods["launch.substitutions"].LaunchConfiguration = _Sub
    mods["launch.launch_description_sources"].PythonLaunchDescriptionSource = lambda path: path
    mods["launch_ros.actions"].Node = type("Node", (_Action,), {})
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


def load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_launch(path: pathlib.Path, handlers: list | None = None, **overrides):
    """generate_launch_description() then its OpaqueFunctions with argument defaults + overrides -> Node actions
    (the event handlers registered go to ``handlers``)."""
    entities = load(path).generate_launch_description()
    config: dict[str, str] = {}
    nodes = []

    def visit(items):
        for e in items:
            name = type(e).__name__
            if name == "DeclareLaunchArgument":
                config.setdefault(e.args[0], overrides.get(e.args[0], e.kwargs.get("default_value")))
            elif name == "IncludeLaunchDescription":
                visit(load(pathlib.Path(e.args[0])).generate_launch_description())
            elif name == "OpaqueFunction":
                ctx = types.SimpleNamespace(launch_configurations={**config, **overrides})
                visit(e.kwargs["function"](ctx) or [])
            elif name == "Node":
                nodes.append(e.kwargs)
            elif name == "RegisterEventHandler" and handlers is not None:
                handlers.append(e.args[0])

    visit(entities)
    return nodes


@pytest.fixture
def share(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "robot.yaml").write_text((ROOT / "config" / "robot.yaml").read_text())
    stand_ins(monkeypatch, tmp_path)
    return tmp_path


def test_robot_launch_nodes(share):
    nodes = run_launch(ROOT / "launch" / "robot.launch.py")
    assert [n["executable"] for n in nodes] == ["s2_node"]
    s2 = nodes[0]
    assert s2["name"] == "s2_node" and s2["namespace"] == ""
    (values,) = s2["parameters"]
    assert set(values) == DECLARED["s2_node"] | EVERY_NODE and values["use_sim_time"] is False
    assert values["model_path"] == "tiny:qwen3_vl"  # from robot.yaml, not from the launch file
    assert dict(s2["remappings"]) == {t: t for t in TOPIC_ARGS - {"cmd_vel"}}

    override = ROOT / "config" / "qwen25vl_internvla_n1_s2.yaml"
    nodes = run_launch(ROOT / "launch" / "robot.launch.py", params_file=str(override), namespace="robot1",
                       use_action_executor="true", use_sim_time="true", image="/cam/color", cmd_vel="/base/cmd_vel")
    assert [n["executable"] for n in nodes] == ["s2_node", "action_executor"]
    s2, ex = nodes
    assert s2["parameters"] == [{"model_path": "~/models/InternVLA-N1-System2", "use_sim_time": True}]
    assert s2["namespace"] == ex["namespace"] == "robot1" and dict(s2["remappings"])["image"] == "/cam/color"
    assert dict(ex["remappings"]) == {"odom": "odom", "cmd_vel": "/base/cmd_vel"}
    assert set(ex["parameters"][0]) <= DECLARED["action_executor"] | EVERY_NODE


def test_sim_launch_adds_the_bridge(share):
    handlers = []
    nodes = run_launch(ROOT / "launch" / "sim.launch.py", handlers)
    # the evaluation drives the simulated robot: internvla-s2-eval with its bridge node named sim_bridge
    assert [n["executable"] for n in nodes] == ["s2_node", "internvla-s2-eval"]
    assert all(n["executable"] in console_scripts() for n in nodes)
    bridge = nodes[1]
    assert bridge["name"] == "sim_bridge"
    args = bridge["arguments"]
    assert args[:2] == ["--s2-mode", "external"] and args[args.index("--out") + 1] == "runs/sim"
    assert args[args.index("--ros-args"):] == ["--ros-args", "--log-level", "info"]

    # both processes get the large-frame DDS profile (issue 17: without it on the bridge, frames were lost)
    profile = str(share / "config" / "fastdds_large_frames.xml")
    assert [n["additional_env"]["FASTDDS_DEFAULT_PROFILES_FILE"] for n in nodes] == [profile, profile]
    # the launch ends with the evaluation: Shutdown when it succeeded, an error (ros2 launch exits 1) when not
    (on_exit,) = handlers
    assert on_exit.kwargs["target_action"].kwargs is bridge
    end = on_exit.kwargs["on_exit"]
    running, ending = types.SimpleNamespace(is_shutdown=False), types.SimpleNamespace(is_shutdown=True)
    assert [type(a).__name__ for a in end(types.SimpleNamespace(returncode=0), running)] == ["LogInfo", "Shutdown"]
    with pytest.raises(RuntimeError, match="exited with code 3"):
        end(types.SimpleNamespace(returncode=3), running)
    assert end(types.SimpleNamespace(returncode=130), ending) is None  # Ctrl-C of the launch: no failure
