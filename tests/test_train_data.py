"""Training data: the episode writer, the LeRobot reader, malformed data, and S2 sample rules."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from internvla_s2_node.core.actions import Action
from internvla_s2_node.train import layout
from internvla_s2_node.train.lerobot_data import DataError, DataSource, scan
from internvla_s2_node.train.recording import write_episode
from internvla_s2_node.train.samples import SampleKind, SampleOptions, build_samples, episode_samples, history_of
from internvla_s2_node.train.synthetic import write_synthetic_scene

F, L, R, S = int(Action.FORWARD), int(Action.LEFT), int(Action.RIGHT), int(Action.STOP)


def _frames(n, w=16, h=12, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _write(root, index=0, actions=(F, F, F, F, L, L, F, S), goal_ids=None, goals=None, instruction="go to the door"):
    n = len(actions)
    if goal_ids is None:
        goal_ids = [4, 3, 2, 1, -1, -1, 1, -1]
        goals = [[3, 4], [5, 6], [7, 8], [9, 10], [0, 0], [0, 0], [11, 2], [0, 0]]
    return write_episode(root, index, instruction, _frames(n), _frames(n, seed=1), actions, np.tile(np.eye(4), (n, 1, 1)), goals, goal_ids)


def test_write_then_read_round_trip(tmp_path):
    path = _write(tmp_path, instruction=["go to the door", "walk to the exit"])
    assert path == tmp_path / "data" / "chunk-000" / "episode_000000.parquet"
    table = pq.read_table(path)
    assert table.column("action").to_pylist() == [-1, F, F, F, F, L, L, F]  # row i: the action that led to frame i
    assert {"pose.125cm_30deg", "goal.125cm_30deg", "relative_goal_frame_id.125cm_30deg"} <= set(table.column_names)
    meta = [json.loads(line) for line in (tmp_path / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert meta == [{"episode_index": 0, "tasks": ["go to the door<INSTRUCTION_SEP>walk to the exit"], "length": 8}]
    assert (tmp_path / "videos" / "chunk-000" / "observation.images.rgb.125cm_0deg" / "episode_000000_7.jpg").is_file()
    assert (tmp_path / "videos" / "chunk-000" / "observation.images.rgb.125cm_30deg" / "episode_000000_0.jpg").is_file()
    episodes, report = scan([DataSource(tmp_path)], on_error="raise")
    assert report.episodes == 1 and not report.skipped
    ep = episodes[0]
    assert ep.instructions == ("go to the door", "walk to the exit")
    assert ep.actions.tolist() == [F, F, F, F, L, L, F, S]  # the action taken at each frame
    assert ep.goal_frames.tolist() == [4, 3, 2, 1, -1, -1, 1, -1]
    assert ep.goals[1].tolist() == [5, 6]
    assert ep.frame_path(3, look_down=True).is_file()


def test_rewriting_an_episode_replaces_its_meta_line(tmp_path):
    _write(tmp_path, 0)
    _write(tmp_path, 1)
    _write(tmp_path, 0, instruction="another one")
    lines = (tmp_path / "meta" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["episode_index"] for x in lines] == [0, 1]
    assert json.loads(lines[0])["tasks"] == ["another one"]
    assert json.loads((tmp_path / "meta" / "info.json").read_text())["total_episodes"] == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(actions=(F, F, F, F, L, L, F, F)), "last action"),
        (dict(actions=(F, F, F, F, L, L, 9, S)), "unknown action"),
        (dict(goal_ids=[9, 3, 2, 1, -1, -1, 1, -1], goals=[[0, 0]] * 8), "outside the episode"),
        (dict(goal_ids=[4, 3, 2, 1, -1, -1, 1, -1], goals=[[16, 0]] + [[0, 0]] * 7), "outside the 16x12"),
        (dict(goal_ids=[4, 3, 2, 1, -1, -1, 1, -1], goals=None), "both"),
    ],
)
def test_writer_rejects_inconsistent_episodes(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _write(tmp_path, **kwargs)


def test_data_spec_parsing(tmp_path):
    assert DataSource.parse("a/b").camera == layout.CameraSetup(125, 0, 30)
    src = DataSource.parse("a/b@60,15,15")
    assert str(src.path) == "a/b" and src.camera.setting == "60cm_15deg" and src.camera.rgb_folder(False).endswith("60cm_15deg")
    with pytest.raises(ValueError, match="HEIGHT_CM"):
        DataSource.parse("a@60,15")


# --- malformed data: a clear error naming file and episode, or a counted skip ---


def _scene(tmp_path, n=3):
    return write_synthetic_scene(tmp_path / "scene", num_episodes=n, length=12, frame_size=(16, 16), look_down_size=(16, 12))


def test_missing_parquet(tmp_path):
    scene = _scene(tmp_path)
    (scene / "data" / "chunk-000" / "episode_000001.parquet").unlink()
    with pytest.raises(DataError, match=r"episode 1 \(.*episode_000001\.parquet\): parquet file missing"):
        scan([DataSource(scene)], on_error="raise")
    episodes, report = scan([DataSource(scene)], on_error="skip")
    assert [e.index for e in episodes] == [0, 2]
    assert len(report.skipped) == 1 and "episode_000001.parquet" in report.skipped[0]
    assert "1 skipped" in report.summary()


def test_length_disagrees_with_rows(tmp_path):
    scene = _scene(tmp_path)
    path = scene / "data" / "chunk-000" / "episode_000002.parquet"
    pq.write_table(pq.read_table(path).slice(0, 10), path)
    with pytest.raises(DataError, match=r"episode 2 .*episode_000002\.parquet.*length 12 but the parquet has 10 rows"):
        scan([DataSource(scene)], on_error="raise")
    episodes, report = scan([DataSource(scene)])
    assert len(episodes) == 2 and len(report.skipped) == 1


def test_goal_frame_out_of_range(tmp_path):
    scene = _scene(tmp_path)
    path = scene / "data" / "chunk-000" / "episode_000000.parquet"
    table = pq.read_table(path)
    column = "relative_goal_frame_id.125cm_30deg"
    ids = table.column(column).to_pylist()
    ids[2] = 40
    table = table.set_column(table.column_names.index(column), column, pa.array(ids, pa.int64()))
    pq.write_table(table, path)
    with pytest.raises(DataError, match=r"episode 0 .*episode_000000\.parquet.*relative_goal_frame_id 40 at frame 2 is out of range"):
        scan([DataSource(scene)], on_error="raise")


def test_missing_frames_are_found_at_scan_time(tmp_path):
    scene = _scene(tmp_path)
    folder = scene / "videos" / "chunk-000" / "observation.images.rgb.125cm_30deg"
    (folder / "episode_000001_7.png").unlink()
    with pytest.raises(DataError, match=r"episode 1 of .*1 of 12 frames missing.*episode_000001_7\.png"):
        scan([DataSource(scene)], on_error="raise")
    _, report = scan([DataSource(scene)])
    assert len(report.skipped) == 1


def test_missing_columns_and_bad_meta(tmp_path):
    scene = _scene(tmp_path, n=1)
    with pytest.raises(DataError, match=r"missing columns \['goal.60cm_30deg'"):
        scan([DataSource(scene, layout.CameraSetup(60, 0, 30))], on_error="raise")
    (scene / "meta" / "episodes.jsonl").write_text('{"episode_index": 0}\n')
    with pytest.raises(DataError, match=r"episodes\.jsonl line 1"):
        scan([DataSource(scene)], on_error="raise")
    with pytest.raises(DataError, match="does not exist"):
        scan([DataSource(tmp_path / "nothing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scene under"):
        scan([DataSource(tmp_path / "empty")])


def test_frame_index_out_of_range_at_load(tmp_path):
    scene = _scene(tmp_path, n=1)
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    with pytest.raises(DataError, match=r"episode 0 of .*frame 12 out of range \(length 12\)"):
        episodes[0].frame_path(12, look_down=False)


# --- sample rules (upstream's NavPixelGoalDataset) ---


def _episode(actions, goal_ids, goals=None):
    from pathlib import Path

    from internvla_s2_node.train.lerobot_data import Episode

    n = len(actions)
    goals = np.asarray(goals if goals is not None else [[i, 2 * i] for i in range(n)])
    return Episode(Path("."), 0, ("go",), np.asarray(actions), np.asarray(goal_ids), goals, layout.CameraSetup(), ".jpg", ".jpg")


def test_samples_follow_upstream_rules():
    #          0  1  2  3  4  5  6  7  8  9  10 11 12
    actions = [F, F, F, F, L, L, L, L, L, F, F, R, S]
    goal_ids = [4, 3, 2, 1, -1, -1, -1, -1, -1, 2, 1, -1, -1]
    specs = episode_samples(_episode(actions, goal_ids), 0, SampleOptions(sample_step=4, num_future_steps=4, stop_repeat=5))
    got = [(s.frame, s.kind, s.answers) for s in specs]
    assert got[0] == (0, SampleKind.PIXEL_GOAL, ("↓", "0 0"))
    assert got[1] == (4, SampleKind.TURNS, ("←←←←",))  # at most num_future_steps turns
    assert got[2] == (8, SampleKind.TURNS, ("←",))  # cut at the next forward step
    assert got[3:] == [(12, SampleKind.STOP, ("STOP",))] * 5
    assert specs[0].pixel == (0, 0)


def test_samples_skip_answers_read_from_detour_steps():
    """Episode.expert (a perturbed recording): a frame teaches only if the actions its answer is read
    from were the expert's: up to its pixel goal, or its turns and the action that cut them."""
    from dataclasses import replace

    #          0  1  2  3  4  5  6  7  8  9  10 11 12
    actions = [F, F, F, F, L, L, L, L, L, F, F, R, S]
    goal_ids = [4, 3, 2, 1, -1, -1, -1, -1, -1, 2, 1, -1, -1]
    opts = SampleOptions(sample_step=4, num_future_steps=4, stop_repeat=1)
    ep = _episode(actions, goal_ids)
    plain = [(s.frame, s.kind) for s in episode_samples(ep, 0, opts)]
    assert plain == [(0, SampleKind.PIXEL_GOAL), (4, SampleKind.TURNS), (8, SampleKind.TURNS), (12, SampleKind.STOP)]
    expert = np.ones(len(actions), bool)
    expert[3] = False  # inside frame 0's way to its goal (frame 4)
    assert [s.frame for s in episode_samples(replace(ep, expert=expert), 0, opts)] == [4, 8, 12]
    expert = np.ones(len(actions), bool)
    expert[9] = False  # the forward step that cut frame 8's single turn: it might have been another turn
    assert [s.frame for s in episode_samples(replace(ep, expert=expert), 0, opts)] == [0, 4, 12]
    expert = np.ones(len(actions), bool)
    expert[4] = False  # frame 4's first turn; frame 0 keeps its goal: the recorder ends a run where a detour starts
    # frame 5, the first expert frame after the detour, teaches though it is off the sample_step grid
    assert [s.frame for s in episode_samples(replace(ep, expert=expert), 0, opts)] == [0, 5, 8, 12]
    expert[:] = True
    expert[10] = False  # read by no grid sample; frame 11 after it teaches its turn
    got = [(s.frame, s.kind, s.answers) for s in episode_samples(replace(ep, expert=expert), 0, opts)]
    assert [g[:2] for g in got] == plain[:3] + [(11, SampleKind.TURNS), (12, SampleKind.STOP)]
    assert got[3][2] == ("→STOP",)


def test_near_goals_forward_frames_and_trailing_stop():
    actions = [F, F, F, F, F, R, R, S]
    goal_ids = [4, 3, 2, 1, 1, -1, -1, -1]
    opts = SampleOptions(sample_step=2, num_future_steps=4, stop_repeat=1, min_goal_frames=3)
    got = [(s.frame, s.kind, s.answers) for s in episode_samples(_episode(actions, goal_ids), 0, opts)]
    # frame 2: goal 2 frames ahead (< 3) -> nothing; frame 4: forward without goal -> nothing;
    # frame 6: turn then the final STOP -> "→STOP" (upstream keeps it)
    assert got == [(0, SampleKind.PIXEL_GOAL, ("↓", "0 0")), (6, SampleKind.TURNS, ("→STOP",)), (7, SampleKind.STOP, ("STOP",))]
    only = episode_samples(_episode(actions, goal_ids), 0, SampleOptions(sample_step=2, pixel_goal_only=True))
    assert [s.kind for s in only] == [SampleKind.PIXEL_GOAL]


def test_every_instruction_gets_its_samples_and_history_is_linspace(tmp_path):
    scene = _scene(tmp_path, n=1)
    write_episode(scene, 5, ["a", "b"], _frames(12), _frames(12), [F] * 11 + [S])
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    specs = build_samples(episodes, SampleOptions(stop_repeat=1))
    assert {s.instruction for s in specs if s.episode == 1} == {"a", "b"}
    late = next(s for s in specs if s.frame == 8)
    assert history_of(late, 8) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert history_of(next(s for s in specs if s.frame == 11), 8) == [0, 1, 2, 4, 5, 7, 8, 10]
    assert history_of(next(s for s in specs if s.frame == 0), 8) == []


def test_broken_frames_at_load_raise_or_are_skipped_and_counted(tmp_path):
    from transformers import AutoProcessor

    from internvla_s2_node.core.tiny import default_tiny_checkpoint
    from internvla_s2_node.train.dataset import S2Dataset

    scene = write_synthetic_scene(tmp_path / "scene", num_episodes=1, length=12, frame_size=(32, 32), look_down_size=(32, 32))
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    specs = build_samples(episodes, SampleOptions(stop_repeat=1))
    processor = AutoProcessor.from_pretrained(default_tiny_checkpoint("qwen3_vl"), local_files_only=True)
    processor.image_processor.size = {"shortest_edge": 1024, "longest_edge": 4096}
    assert specs[-1].kind == SampleKind.STOP and specs[-1].frame == 11  # the only sample showing frame 11
    broken = scene / "videos" / "chunk-000" / "observation.images.rgb.125cm_0deg" / "episode_000000_11.png"
    broken.write_bytes(b"not a png")
    strict = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise")
    with pytest.raises(DataError, match=r"episode 0 of .*cannot read frame .*episode_000000_11\.png"):
        strict[len(specs) - 1]
    lenient = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="skip")
    item = lenient[len(specs) - 1]  # replaced by the next sample (wrapping to the first)
    assert lenient.failures == 1 and torch.equal(item["input_ids"], lenient[0]["input_ids"])


def test_pixel_goal_outside_the_look_down_frame_is_a_data_error(tmp_path):
    from transformers import AutoProcessor

    from internvla_s2_node.core.tiny import default_tiny_checkpoint
    from internvla_s2_node.train.dataset import S2Dataset

    scene = write_synthetic_scene(tmp_path / "scene", num_episodes=1, length=12, frame_size=(32, 32), look_down_size=(32, 32))
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    episodes[0].goals[0] = [40, 3]  # recorded for a larger frame than stored
    specs = [s for s in build_samples(episodes, SampleOptions(stop_repeat=1)) if s.kind == SampleKind.PIXEL_GOAL]
    assert specs[0].frame == 0
    processor = AutoProcessor.from_pretrained(default_tiny_checkpoint("qwen3_vl"), local_files_only=True)
    with pytest.raises(DataError, match=r"episode 0 of .*pixel goal \(40, 3\) at frame 0 is outside the 32x32 look-down frame"):
        S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise")[0]


def test_pixel_goal_repeat_weights_the_kinds():
    actions = [F, F, F, F, L, L, L, L, L, F, F, R, S]
    goal_ids = [4, 3, 2, 1, -1, -1, -1, -1, -1, 2, 1, -1, -1]
    once = episode_samples(_episode(actions, goal_ids), 0, SampleOptions(sample_step=4, stop_repeat=1))
    twice = episode_samples(_episode(actions, goal_ids), 0, SampleOptions(sample_step=4, stop_repeat=1, pixel_goal_repeat=3))
    kinds = [s.kind for s in once]
    assert kinds.count(SampleKind.PIXEL_GOAL) == 1
    assert [s.kind for s in twice].count(SampleKind.PIXEL_GOAL) == 3
    assert [s for s in twice if s.kind != SampleKind.PIXEL_GOAL] == [s for s in once if s.kind != SampleKind.PIXEL_GOAL]


def test_turn_repeat_weights_the_turns_only():
    actions = [F, F, F, F, L, L, L, L, L, F, F, R, S]
    goal_ids = [4, 3, 2, 1, -1, -1, -1, -1, -1, 2, 1, -1, -1]
    once = episode_samples(_episode(actions, goal_ids), 0, SampleOptions(sample_step=2, stop_repeat=1))
    thrice = episode_samples(_episode(actions, goal_ids), 0, SampleOptions(sample_step=2, stop_repeat=1, turn_repeat=3))
    turns = [s for s in once if s.kind == SampleKind.TURNS]
    assert turns and [s for s in thrice if s.kind == SampleKind.TURNS] == [s for s in turns for _ in range(3)]
    assert [s for s in thrice if s.kind != SampleKind.TURNS] == [s for s in once if s.kind != SampleKind.TURNS]
