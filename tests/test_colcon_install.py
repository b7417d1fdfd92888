"""``colcon build`` of ros2_ws (plain and ``--symlink-install``): the installed package is complete.

Needs colcon (the ROS 2 launch kit: scripts/test.sh installs it when ../shared/ros2-launch-kit
exists; a ROS distribution has it too); skipped otherwise. Builds into tmp_path from
``ros2_ws/src``, so a checkout's own ros2_ws/install is not touched.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from package_info import console_scripts

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
COLCON = pathlib.Path(sys.executable).parent / "colcon"

if not COLCON.exists():
    pytest.skip(f"colcon is not installed in this venv ({COLCON}): install the ROS 2 launch kit "
                "(scripts/test.sh does when ../shared/ros2-launch-kit exists)", allow_module_level=True)


def data_files() -> set[str]:
    """Every file of the checkout that belongs in share/internvla_s2 (relative paths)."""
    files = {"package.xml"} | {f"launch/{p.name}" for p in (ROOT / "launch").glob("*.launch.py")}
    for pattern in ("*.yaml", "*.json", "*.xml"):
        files |= {str(p.relative_to(ROOT)) for p in (ROOT / "config").rglob(pattern)}
    return files


@pytest.fixture(scope="module", params=["plain", "symlink"])
def install(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    cmd = [str(COLCON), "--log-base", str(root / "log"), "build", "--base-paths", str(ROOT / "ros2_ws" / "src"),
           "--build-base", str(root / "build"), "--install-base", str(root / "install")]
    if request.param == "symlink":
        cmd.append("--symlink-install")
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 package finished" in proc.stdout
    return root / "install" / "internvla_s2"


def test_share_files_are_installed(install):
    share = install / "share" / "internvla_s2"
    missing = sorted(f for f in data_files() if not (share / f).is_file())
    assert not missing, f"not installed under {share}: {missing}"
    assert "config/sros2/internvla_s2_policy.xml" in data_files()  # docs/SECURITY.md's policy
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "internvla_s2").is_file()
    scripts = console_scripts()
    missing = sorted(s for s in scripts if not (install / "lib" / "internvla_s2" / s).is_file())
    assert scripts and not missing, f"console scripts not installed: {missing}"


def run_installed(install, code: str, ament_prefix: bool = True) -> subprocess.CompletedProcess:
    """Python ``code`` importing the package from the install (not from the checkout)."""
    site = install / "lib" / PY / "site-packages"
    paths = [str(site)] + [f.read_text().splitlines()[0] for f in site.glob("*.egg-link")]  # symlink: colcon's develop hook
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    marker = pathlib.Path("share", "ament_index", "resource_index", "packages", "internvla_s2")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
                if p and not (pathlib.Path(p) / marker).exists()]  # only the install under test names internvla_s2
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(([str(install)] if ament_prefix else []) + prefixes)
    return subprocess.run([sys.executable, "-c", code], cwd=install, env=env, capture_output=True, text=True, timeout=60)


def test_plain_install_finds_its_config_in_the_share_directory(install):
    if (install / "lib" / PY / "site-packages" / "internvla_s2_node").is_dir():  # plain; symlink: a develop egg-link
        proc = run_installed(install, "import internvla_s2_node as m; print(m.__file__)")
        assert proc.stdout.strip().startswith(str(install)), proc.stdout + proc.stderr
    # internvla-s2-eval's s2_node parameters (once site-packages/config/sim.yaml, which does not exist)
    proc = run_installed(install, "from internvla_s2_node.ros.share import sim_params_files; "
                                  "print(sim_params_files(None)[0])")
    assert proc.returncode == 0, proc.stderr
    assert pathlib.Path(proc.stdout.strip()) == install / "share" / "internvla_s2" / "config" / "sim.yaml"


@pytest.mark.parametrize("install", ["plain"], indirect=True)  # a symlink install runs the checkout's code, whose config/ is found
def test_plain_install_without_the_ament_index_says_what_to_do(install):
    assert (install / "lib" / PY / "site-packages" / "internvla_s2_node").is_dir()
    proc = run_installed(install, "from internvla_s2_node.ros.share import config_file; print(config_file('sim.yaml'))",
                         ament_prefix=False)
    assert proc.returncode != 0
    assert "DataNotFound" in proc.stderr and "install/setup.bash" in proc.stderr
    assert "site-packages/config" not in proc.stdout + proc.stderr
