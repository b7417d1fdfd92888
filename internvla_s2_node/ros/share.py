"""The package's data files (config/, launch/): found where they are installed, not next to the code.

A colcon or ROS install puts them in ``share/internvla_s2`` (setup.py ``data_files``), which
the ament index names; the Python modules then live in ``site-packages``, so a path relative
to ``__file__`` points nowhere. A pip editable install (development, CI) installs no
``data_files``: there the checkout the code is imported from is the data's only copy.
"""

from __future__ import annotations

import pathlib

PACKAGE = "internvla_s2"
SIM_PARAMS = "sim.yaml"  # the s2_node parameters of a simulated evaluation (config/)


class DataNotFound(FileNotFoundError):
    pass


def share_dir() -> pathlib.Path:
    """``share/internvla_s2`` from the ament index; else the source checkout this module is imported from."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        pass
    else:
        try:
            return pathlib.Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (no ROS environment)
            pass
    checkout = pathlib.Path(__file__).resolve().parents[2]
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    raise DataNotFound(
        f"{PACKAGE}'s data files (config/, launch/) are not installed: the ament index (AMENT_PREFIX_PATH) does not "
        f"know '{PACKAGE}' and {checkout} is no source checkout; source the colcon workspace's install/setup.bash "
        "(or pip install -e the checkout)")


def config_file(name: str) -> pathlib.Path:
    """An installed file under ``config/`` (``DataNotFound`` when it is missing)."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise DataNotFound(f"{path} does not exist: the {PACKAGE} install is incomplete (rebuild the workspace)")
    return path


def sim_params_files(extra: str | None) -> list[str]:
    """The s2_node parameter files of a simulated evaluation, in the order they apply: sim.yaml, then ``extra``."""
    files = [str(config_file(SIM_PARAMS))]  # share/internvla_s2/config when installed (colcon, ROS)
    return files + [extra] if extra else files
