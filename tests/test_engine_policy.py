"""``--s2-mode engine``: the S2 engine in the evaluation's process, without ROS (evaluation.engine_policy),
and the DAgger recordings it serves (``--policy dagger``, sim.takeover).

The engine mode is only worth having if it decides as the node does: the first test runs the shipped
navigator both ways, over real DDS and in process, and compares every action of every episode."""

from __future__ import annotations

import pathlib

import pytest

from internvla_s2_node.evaluation import cli
from internvla_s2_node.evaluation.engine_policy import ParamsError, engine_config, node_parameters
from internvla_s2_node.evaluation.runner import EvalConfig, evaluate
from internvla_s2_node.sim.mujoco_backend import ASSETS_DIR
from internvla_s2_node.sim.results import read_records
from internvla_s2_node.train import layout
from internvla_s2_node.train.layout import CameraSetup
from internvla_s2_node.train.lerobot_data import DataSource, scan
from internvla_s2_node.train.samples import SampleOptions, episode_samples, frame_sample, recovery_frames
from ros_domains import domain

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL = str(REPO / "internvla_s2_node" / "assets" / "navigator")
PARAMS = str(REPO / "config" / "navigator_s2.yaml")
VAL = str(ASSETS_DIR / "episodes" / "mujoco_val_unseen.json.gz")


def _run(tmp_path, name, **kw):
    cfg = EvalConfig(out=tmp_path / name, model=MODEL, params_file=PARAMS, episodes=VAL, maps=False, progress=False, **kw)
    evaluate(cfg)
    return cfg


@pytest.mark.ros
def test_engine_mode_decides_as_the_node_does_over_dds(tmp_path):
    """Three held-out episodes of the navigator: every action and every metric the same in both modes."""
    ros = _run(tmp_path, "ros", policies=("s2",), limit=3, domain_id=domain("engine_policy"))
    engine = _run(tmp_path, "engine", policies=("s2",), limit=3, s2_mode="engine")
    got = {m: {r["episode_id"]: r for r in read_records(c.policy_dir("s2"))} for m, c in (("ros", ros), ("engine", engine))}
    assert sorted(got["ros"]) == sorted(got["engine"]) and len(got["ros"]) == 3
    moved = 0
    for ep, r in got["ros"].items():
        e = got["engine"][ep]
        assert e["actions"] == r["actions"] and e["policy_calls"] == r["policy_calls"], ep
        assert e["metrics"] == r["metrics"], ep
        moved += r["steps"] > 5
    assert moved >= 2  # the navigator drives: the comparison covers real decisions, not one STOP


def test_dagger_recording_teaches_only_the_oracles_steps_after_s2s_own(tmp_path):
    """The navigator drives each held-out episode until its STOP (or its budget), then the oracle; the recording
    holds every frame, its ``expert`` column switches once, and the switch frame is taught."""
    rec = tmp_path / "rec"
    cfg = _run(tmp_path, "dagger", policies=("dagger",), limit=2, s2_mode="engine", record=str(rec), record_depth=False)
    records = read_records(cfg.policy_dir("dagger"))
    episodes, report = scan([DataSource(rec, CameraSetup(125, 0, 30))], on_error="raise")
    assert report.episodes == len(records) == 2
    by_file = {pathlib.Path(r["recording"]).resolve(): r for r in records}
    for i, ep in enumerate(episodes):
        r = by_file[layout.parquet_path(ep.scene, ep.index).resolve()]
        switch = r["takeover_step"]
        assert r["metrics"]["success"] == 1.0 and r["takeover_reason"]
        assert ep.expert.tolist() == [False] * switch + [True] * (ep.length - switch)
        if 0 < switch < ep.length - 1:
            assert recovery_frames(ep) == [switch]
        opts = SampleOptions(sample_step=4, stop_repeat=1)
        taught = {s.frame for s in episode_samples(ep, i, opts)}
        assert all(t >= switch for t in taught) and ep.length - 1 in taught
        assert switch in taught or frame_sample(ep, switch, opts) is None or switch == ep.length - 1


def test_params_files_layer_as_for_the_node_and_a_typo_is_named(tmp_path):
    p = node_parameters(PARAMS, MODEL)
    assert (p["resize_w"], p["look_down_mode"], p["model_path"]) == (160, "command", MODEL)  # navigator_s2, sim.yaml
    assert engine_config(p).resize_h == 160
    typo = tmp_path / "typo.yaml"
    typo.write_text("s2_node:\n  ros__parameters:\n    resize_ww: 160\n")
    with pytest.raises(ParamsError, match=r"unknown s2_node parameter\(s\) \['resize_ww'\]"):
        node_parameters(str(typo), MODEL)


@pytest.mark.parametrize("text, says", [
    ("s2_node:\n  ros__parameters:\n    resize_ww: 160\n", "unknown s2_node parameter(s) ['resize_ww']"),
    ("s2_node:\n  ros__parameters:\n    device: [cpu\n", "not valid YAML at line 4"),
    ("s2_node:\n  ros__parameters:\n    look_down_mode: sideways\n", "look_down_mode must be one of ('requery', 'command'), got 'sideways'"),
])
def test_engine_mode_params_errors_are_one_line_before_anything_starts(tmp_path, capsys, text, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    out = tmp_path / "out"
    argv = ["--policy", "dagger", "--s2-mode", "engine", "--model", MODEL, "--params-file", str(bad), "--out", str(out)]
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert len(err) == 1 and err[0].startswith("internvla-s2-eval: ") and says in err[0], err
    assert not out.exists()
