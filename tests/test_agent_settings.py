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
