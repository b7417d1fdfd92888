"""config/robot.yaml is the one place the defaults are written: the declarations must match it."""

from __future__ import annotations

import pathlib

import pytest
import yaml

pytest.importorskip("rclpy")

from rcl_interfaces.msg import ParameterType  # noqa: E402

from internvla_s2_node.core.config import EngineConfig  # noqa: E402
from internvla_s2_node.ros import params  # noqa: E402
from internvla_s2_node.ros.launch_util import flatten, node_parameters  # noqa: E402

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "config"


def robot_yaml() -> dict:
    return yaml.safe_load((CONFIG / "robot.yaml").read_text())


@pytest.mark.parametrize("node_name", sorted(params.NODE_NAMES))
def test_every_declared_default_is_in_robot_yaml_with_the_same_value(node_name):
    specs = params.NODE_NAMES[node_name]
    in_yaml = flatten(robot_yaml()[node_name]["ros__parameters"])
    declared = {s.name: s.default for s in specs}
    assert sorted(in_yaml) == sorted(declared), "robot.yaml and the declarations list different parameters"
    for name, default in declared.items():
        assert type(in_yaml[name]) is type(default) and in_yaml[name] == default, (
            f"{node_name}.{name}: declared {default!r}, robot.yaml has {in_yaml[name]!r}")


def test_override_files_only_name_declared_parameters_and_differ_in_model_path():
    declared = {s.name for s in params.S2_SPECS}
    files = sorted(CONFIG.glob("*.yaml"))
    assert {f.name for f in files} >= {"robot.yaml", "qwen3vl_s2.yaml", "qwen25vl_internvla_n1_s2.yaml", "qwen3vl_moe_s2.yaml"}
    for f in files:
        data = yaml.safe_load(f.read_text())
        for node_name, specs in params.NODE_NAMES.items():
            if node_name in data:
                values = node_parameters(f, node_name)
                known = params.specs_by_name(specs)
                assert set(values) <= set(known), f"{f.name}: undeclared {set(values) - set(known)}"
                for name, value in values.items():
                    assert params.check_value(known[name], value) is None, f"{f.name}: {name}={value!r}"
        if f.name.startswith("qwen"):  # backbone swap files: the checkpoint is all that changes
            assert set(node_parameters(f, "s2_node")) == {"model_path"} <= declared


def test_descriptors_carry_types_ranges_and_read_only():
    by_name = params.specs_by_name(params.S2_SPECS)
    d = by_name["max_waypoint_distance"].descriptor()
    assert d.type == ParameterType.PARAMETER_DOUBLE and d.description
    assert d.floating_point_range[0].from_value == 0.1 and d.floating_point_range[0].to_value == 100.0
    d = by_name["num_history"].descriptor()
    assert d.type == ParameterType.PARAMETER_INTEGER and d.integer_range[0].to_value == 64
    assert by_name["autostart"].descriptor().read_only
    assert "one of" in by_name["look_down_mode"].descriptor().additional_constraints
    for s in params.S2_SPECS + params.EXECUTOR_SPECS:
        assert s.descriptor().description and params.check_value(s, s.default) is None, s.name


def test_validation_reasons_and_lifecycle_guard():
    by_name = params.specs_by_name(params.S2_SPECS)
    assert "one of" in params.check_value(by_name["dtype"], "float8")
    assert "cuda:N" in params.check_value(by_name["device"], "tpu")
    assert "[0.1, 100.0]" in params.check_value(by_name["max_waypoint_distance"], 500.0)
    assert "empty" in params.check_value(by_name["model_path"], " ")
    for name in ("model_path", "device", "dtype"):
        reason = params.check_change(by_name[name], "cpu" if name == "device" else "auto", True, "active")
        assert reason and "unconfigured" in reason and "active" in reason
        assert params.check_change(by_name[name], "cpu" if name == "device" else "auto", False, "unconfigured") is None
    assert params.check_change(by_name["max_waypoint_distance"], 2.0, True, "active") is None
    assert params.check_change(None, 1, True, "active") is None  # not ours (use_sim_time)


def test_engine_config_from_the_defaults():
    values = {s.name: s.default for s in params.S2_SPECS}
    cfg = params.engine_config(values)
    assert isinstance(cfg, EngineConfig) and cfg.model_path == "tiny:qwen3_vl"
    assert cfg.max_instruction_chars == 2000 and cfg.look_down_mode == "requery"
    with pytest.raises(ValueError, match="history_capacity"):
        params.engine_config(values | {"history_capacity": 4, "num_history": 8})


def test_params_file_keys_for_namespaced_nodes(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    seed: 1\n    num_history: 2\n"
                 "/robot1/s2_node:\n  ros__parameters:\n    seed: 3\n"
                 "other:\n  ros__parameters:\n    seed: 9\n")
    assert node_parameters(f, "s2_node", "robot1") == {"seed": 3, "num_history": 2}
    assert node_parameters(f, "s2_node") == {"seed": 1, "num_history": 2}
