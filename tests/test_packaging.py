"""setup.py builds without warnings and ships the simulator assets (issue 16, docs drift)."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_build_py_has_no_setuptools_warnings_and_ships_assets(tmp_path):
    for name in ("setup.py", "package.xml", "resource", "launch", "config", "internvla_s2_node"):
        src = ROOT / name
        (shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, tmp_path / name))
    done = subprocess.run([sys.executable, "setup.py", "build_py", "-d", str(tmp_path / "build")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "tests_require" not in output and "absent from the `packages` configuration" not in output
    assets = tmp_path / "build" / "internvla_s2_node" / "sim" / "assets"
    assert (assets / "episodes" / "mujoco_val.json.gz").is_file() and len(list((assets / "scenes").glob("*.json"))) >= 3
