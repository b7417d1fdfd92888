"""Oracle episodes recorded from the simulator are training data the trainer reads."""

import pytest

from internvla_s2_node.evaluation.runner import EvalConfig, evaluate
from internvla_s2_node.train.lerobot_data import DataSource, scan
from internvla_s2_node.train.layout import CameraSetup
from internvla_s2_node.train.samples import SampleKind, SampleOptions, episode_samples


def test_oracle_recordings_become_training_samples(tmp_path):
    rec = tmp_path / "rec"
    evaluate(EvalConfig(out=tmp_path / "out", policies=("oracle",), limit=2, width=128, height=96, maps=False,
                        progress=False, record=str(rec)))
    episodes, report = scan([DataSource(rec, CameraSetup(125, 0, 30))], on_error="raise")
    assert report.episodes == 2 and not report.skipped
    kinds = set()
    for i, ep in enumerate(episodes):
        assert ep.actions[-1] == 0  # STOP
        assert (ep.goal_frames >= 0).any(), "forward runs must give pixel goals"
        for sample in episode_samples(ep, i, SampleOptions()):
            kinds.add(sample.kind)
            if sample.pixel is not None:
                assert 0 <= sample.pixel[0] < 128 and 0 <= sample.pixel[1] < 96
    assert {SampleKind.PIXEL_GOAL, SampleKind.STOP} <= kinds


def test_record_needs_the_oracle(tmp_path):
    with pytest.raises(ValueError, match="oracle"):
        EvalConfig(out=tmp_path, policies=("random",), record=str(tmp_path / "rec"))
