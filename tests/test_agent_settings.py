"""R2R agent settings are the simulators' default; RxR's are a named option (issue 12).

Upstream's R2R evaluation keeps habitat-lab's agent: InternNav scripts/eval/configs/vln_r2r.yaml
(@7a5c624) takes ``rgbd_agent`` (line 6) and sets only the sensors' sizes (lines 20-32), so
habitat-lab's defaults hold: default_structured_configs.py (@0fb6f43) line 1544 sensor
``position [0.0, 1.25, 0.0]``, lines 1727-1728 agent ``height 1.5``, ``radius 0.1``. The trainer's
default camera setting is the same 1.25 m with a 30 deg look-down (``125cm_30deg``).
"""

import pathlib

import pytest
import yaml

from internvla_s2_node.sim.backend import AGENT_SETTINGS, SimConfig
from internvla_s2_node.train.config import TrainConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_r2r_is_the_default_agent():
    cfg = SimConfig()
    assert (cfg.agent_height, cfg.agent_radius, cfg.camera_height) == (1.5, 0.1, 1.25)
    assert SimConfig.for_agent("r2r") == cfg


def test_rxr_is_a_named_option():
    rxr = SimConfig.for_agent("rxr", width=320, height=240)
    assert (rxr.agent_height, rxr.agent_radius, rxr.camera_height) == (0.88, 0.18, 0.88)
    assert (rxr.width, rxr.height) == (320, 240)
    assert set(AGENT_SETTINGS) == {"r2r", "rxr"}
    with pytest.raises(ValueError, match="unknown agent setting 'r2x'"):
        SimConfig.for_agent("r2x")


def test_trainer_default_camera_matches_the_simulator():
    train = TrainConfig(data=["d"], output_dir="o")
    assert (train.height_cm, train.front_pitch, train.down_pitch) == (round(SimConfig().camera_height * 100), 0, 30)


def test_sim_params_project_pixels_from_the_simulator_camera_height():
    # The S2 node turns pixel goals into points with camera_extrinsic.z: it must be the simulated camera's height.
    params = yaml.safe_load((REPO / "config" / "sim.yaml").read_text())["s2_node"]["ros__parameters"]
    assert params["camera_extrinsic"]["z"] == SimConfig().camera_height


def test_evaluation_takes_the_agent_setting_by_name(tmp_path):
    from internvla_s2_node.evaluation.cli import config_from_args, parse_args
    from internvla_s2_node.evaluation.provenance import identity
    from internvla_s2_node.evaluation.runner import EvalConfig
    from internvla_s2_node.evaluation.s2_session import ros_arguments

    default = config_from_args(parse_args(["--out", str(tmp_path)]))
    rxr = config_from_args(parse_args(["--out", str(tmp_path), "--agent", "rxr"]))
    assert default.sim_config.camera_height == 1.25 and default.sim_config.agent_radius == 0.1
    assert (rxr.sim_config.agent_height, rxr.sim_config.agent_radius, rxr.sim_config.camera_height) == (0.88, 0.18, 0.88)
    # The S2 node projects pixel goals from the simulated camera's height, whichever setting runs.
    assert "camera_extrinsic.z:=0.88" in ros_arguments(rxr) and "camera_extrinsic.z:=1.25" in ros_arguments(default)
    assert "agent" not in identity(default, "oracle") and identity(rxr, "oracle")["agent"] == "rxr"
    with pytest.raises(ValueError, match="agent must be one of"):
        EvalConfig(out=tmp_path, agent="r2x")
