"""Params files as users write them (issue 16 item 7): typos are warned with the closest declared
name, a whole number for a float is taken as that float, any other type mismatch is one line."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")

from internvla_s2_node.ros import params  # noqa: E402
from internvla_s2_node.ros.action_executor import ActionExecutor  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = pytest.mark.ros


def test_unknown_names_get_the_closest_declared_one():
    lines = params.unknown_parameters(
        ["max_waypoint_distnce", "use_sim_time", "qos_overrides./image.subscription.depth", "zzz", "device"],
        params.S2_SPECS)
    assert lines[0] == ("parameter max_waypoint_distnce is not declared by this node and is ignored; "
                        "did you mean max_waypoint_distance?")
    assert len(lines) == 2 and lines[1].startswith("parameter zzz is not declared") and "config/robot.yaml" in lines[1]


def test_int_for_float_is_taken_and_other_mismatches_are_one_line():
    spec = params.specs_by_name(params.S2_SPECS)["max_waypoint_distance"]
    assert params.coerce_override(spec, 5) == 5.0 and type(params.coerce_override(spec, 5)) is float
    with pytest.raises(ValueError, match="parameter max_waypoint_distance must be a float .* got 'far' .*params file"):
        params.coerce_override(spec, "far")
    with pytest.raises(ValueError, match="must be a int"):
        params.coerce_override(params.specs_by_name(params.S2_SPECS)["num_history"], 8.0)


@pytest.fixture
def ros_context():
    ctx = rclpy.Context()
    yield ctx
    if ctx.ok():
        rclpy.shutdown(context=ctx)


def test_params_file_typo_and_int_for_float_on_a_real_node(tmp_path, ros_context, capfd):
    f = tmp_path / "p.yaml"
    f.write_text("/**/action_executor:\n  ros__parameters:\n    max_linear_speed: 1\n    max_linear_sped: 0.5\n")
    rclpy.init(args=["action_executor", "--ros-args", "--params-file", str(f)], context=ros_context,
               domain_id=domain("ros_params_file"))
    node = ActionExecutor(context=ros_context)
    try:
        value = node.get_parameter("max_linear_speed").value
        assert value == 1.0 and type(value) is float
    finally:
        node.destroy_node()
    err = capfd.readouterr().err
    assert "parameter max_linear_sped is not declared by this node and is ignored; did you mean max_linear_speed?" in err


def test_params_file_wrong_type_is_a_one_line_error(tmp_path, ros_context):
    f = tmp_path / "p.yaml"
    f.write_text("/**/action_executor:\n  ros__parameters:\n    max_linear_speed: fast\n")
    rclpy.init(args=["action_executor", "--ros-args", "--params-file", str(f)], context=ros_context,
               domain_id=domain("ros_params_file"))
    with pytest.raises(ValueError, match="parameter max_linear_speed must be a float"):
        ActionExecutor(context=ros_context)


def test_s2_node_warns_at_configure_and_takes_int_for_float(ros_context, capfd):
    from rclpy.parameter import Parameter

    import ros_helpers as T
    from internvla_s2_node.ros.s2_node import S2Node

    rclpy.init(context=ros_context, domain_id=domain("ros_params_file"))
    node = S2Node(context=ros_context, engine_factory=T.scripted_engine_factory(["STOP"]),
                  parameter_overrides=[Parameter("autostart", value=False), Parameter("max_waypoint_distnce", value=5.0),
                                       Parameter("max_waypoint_distance", value=5)])
    try:
        value = node.get_parameter("max_waypoint_distance").value
        assert value == 5.0 and type(value) is float
        capfd.readouterr()
        node.trigger_configure()
        err = capfd.readouterr().err
        assert ("parameter max_waypoint_distnce is not declared by this node and is ignored; "
                "did you mean max_waypoint_distance?") in err
    finally:
        node.release()
        node.destroy_node()
