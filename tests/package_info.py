"""The package as setup.py declares it (read from its source) and as a sourced colcon overlay installed it."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def console_scripts() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    return {ast.literal_eval(e).split("=")[0].strip() for e in v.elts}
    raise AssertionError("no console_scripts in setup.py")


def installed_share() -> pathlib.Path:
    """internvla_s2's share directory from the ament index; skips the calling test module with the reason
    when the colcon overlay is not sourced (launch would otherwise wait for its launch file until a timeout)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return pathlib.Path(get_package_share_directory("internvla_s2"))
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        pytest.skip("internvla_s2 is not in the ament index: build ros2_ws with colcon and source its "
                    "install/setup.bash (scripts/test.sh does)", allow_module_level=True)
