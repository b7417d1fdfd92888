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


def test_recording_without_depth_keeps_the_rgb_frames_and_labels(tmp_path):
    import pyarrow.parquet as pq

    runs = {}
    for depth in (True, False):
        rec = tmp_path / f"rec_{depth}"
        evaluate(EvalConfig(out=tmp_path / f"out_{depth}", policies=("oracle",), limit=1, width=128, height=96, maps=False,
                            progress=False, record=str(rec), record_depth=depth))
        runs[depth] = rec
    files = {d: sorted(p.relative_to(rec) for p in rec.rglob("*") if p.is_file() and "meta" not in p.parts) for d, rec in runs.items()}
    depth_files = [f for f in files[True] if "observation.images.depth" in str(f)]
    assert depth_files and files[False] == [f for f in files[True] if f not in depth_files]
    for f in files[False]:
        if f.suffix == ".parquet":
            assert pq.read_table(runs[True] / f).equals(pq.read_table(runs[False] / f))
        else:
            assert (runs[True] / f).read_bytes() == (runs[False] / f).read_bytes(), f
    assert (runs[True] / f.parts[0] / "meta" / "episodes.jsonl").read_text() == (runs[False] / f.parts[0] / "meta" / "episodes.jsonl").read_text()


def test_perturbed_recording_teaches_only_from_the_oracles_own_choices(tmp_path):
    """--oracle-perturb: the recording keeps every frame (detours included, they are the later frames'
    history) with an ``expert`` column, and no sample's answer is read from a detour step."""
    import pyarrow.parquet as pq

    from internvla_s2_node.train import layout

    rec = tmp_path / "rec"
    evaluate(EvalConfig(out=tmp_path / "out", policies=("oracle",), limit=3, width=128, height=96, maps=False,
                        progress=False, record=str(rec), oracle_perturb=0.2, seed=1))
    episodes, report = scan([DataSource(rec, CameraSetup(125, 0, 30))], on_error="raise")
    assert report.episodes == 3
    detour_frames = 0
    for i, ep in enumerate(episodes):
        table = pq.read_table(layout.parquet_path(ep.scene, ep.index))
        assert table.column(layout.EXPERT_COLUMN).to_pylist() == ep.expert.tolist()
        detour_frames += int((~ep.expert).sum())
        opts = SampleOptions(sample_step=1, stop_repeat=1)
        taught = episode_samples(ep, i, opts)
        plain = episode_samples(type(ep)(**{**ep.__dict__, "expert": None}), i, opts)
        assert len(taught) < len(plain)
        for s in taught:
            k = int(ep.goal_frames[s.frame])
            span = k if s.kind == SampleKind.PIXEL_GOAL else len(s.answers[0].replace("STOP", "S"))
            assert ep.expert[s.frame : s.frame + span].all(), (s.frame, s.kind)
    assert detour_frames > 0
    with pytest.raises(ValueError, match="oracle"):
        EvalConfig(out=tmp_path, policies=("random",), oracle_perturb=0.1)
