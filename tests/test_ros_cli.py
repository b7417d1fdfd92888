"""The ROS programs' command lines (issue 16 items 6 and 8): --help answers at once without loading a
model or spinning; a bad params file or option is one line and exit 2 before anything starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("rclpy")

from internvla_s2_node.ros import action_executor, bringup, s2_node  # noqa: E402

pytestmark = pytest.mark.ros
PROGRAMS = {"action_executor": "internvla_s2_node.ros.action_executor",
            "internvla-s2-bringup": "internvla_s2_node.ros.bringup",
            "s2_node": "internvla_s2_node.ros.s2_node"}


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
def test_help_answers_without_loading_anything(prog):
    """(Before, s2_node and action_executor ignored --help: they loaded the model and spun.)"""
    done = subprocess.run([sys.executable, "-m", PROGRAMS[prog], "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {prog}") and "--ros-args --params-file" in done.stdout
    assert "``" not in done.stdout and "--debug" in done.stdout


@pytest.mark.parametrize("text, says", [
    ("a: [\n", "not valid YAML at line 2"),
    ("- 1\n- 2\n", "expected 'NODE_NAME: {ros__parameters: {...}}' sections"),
    ("s2_node:\n  device: cpu\n", "expected 'NODE_NAME: {ros__parameters: {...}}' sections"),
])
def test_bad_params_file_is_one_line_exit_2(tmp_path, capsys, text, says):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    for prog, main in (("internvla-s2-bringup", bringup.main), ("action_executor", action_executor.main),
                       ("s2_node", s2_node.main)):
        assert main([prog, "--ros-args", "--params-file", str(f)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{prog}: --params-file {f}: ") and says in err[0], err


def test_missing_params_file_and_unknown_option(tmp_path, capsys):
    assert bringup.main(["internvla-s2-bringup", "--ros-args", "--params-file", str(tmp_path / "no.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert action_executor.main(["action_executor", "--model", "x"]) == 2
    assert capsys.readouterr().err.strip() == "action_executor: unrecognized arguments: --model x; see action_executor --help"


def test_namespaced_params_file_is_accepted(tmp_path):
    from internvla_s2_node.ros import node_cli

    f = tmp_path / "p.yaml"
    f.write_text("robot1:\n  s2_node:\n    ros__parameters:\n      device: cpu\n/**:\n  ros__parameters:\n")
    assert set(node_cli.check_params_file(f)) == {"robot1", "/**"}
