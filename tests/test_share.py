"""ros/share.py: the package's data files come from the ament index, else from this checkout."""

import pathlib

import pytest

from internvla_s2_node.ros import share

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_without_a_ros_environment_the_checkout_is_used(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)  # ament_index_python raises OSError then
    assert share.share_dir() == ROOT
    assert share.config_file("sim.yaml") == ROOT / "config" / "sim.yaml"


def test_the_ament_index_wins(monkeypatch, tmp_path):
    pytest.importorskip("ament_index_python")
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "internvla_s2").write_text("")
    (tmp_path / "share" / "internvla_s2" / "config").mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert share.share_dir() == tmp_path / "share" / "internvla_s2"
    with pytest.raises(share.DataNotFound, match="install is incomplete"):
        share.config_file("sim.yaml")
