"""The training frame cache (--frame-cache): the same samples as decoding every frame, one file per episode."""

import os

import numpy as np
import pytest
import torch

from internvla_s2_node.train import dataset as dataset_module
from internvla_s2_node.train.cli import build_parser, config_from_args
from internvla_s2_node.train.dataset import S2Dataset
from internvla_s2_node.train.lerobot_data import DataError, DataSource, scan
from internvla_s2_node.train.samples import SampleKind, SampleOptions, build_samples
from internvla_s2_node.train.synthetic import write_synthetic_scene


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    from internvla_s2_node.core.tiny import default_tiny_checkpoint

    proc = AutoProcessor.from_pretrained(default_tiny_checkpoint("qwen3_vl"), local_files_only=True)
    proc.image_processor.size = {"shortest_edge": 1024, "longest_edge": 4096}
    return proc


def _data(root, seed=0):
    # Front frames larger than the model input, so every frame is resized (as 640x480 -> 160x160 in training).
    scene = write_synthetic_scene(root, num_episodes=2, length=12, seed=seed, frame_size=(64, 48), look_down_size=(64, 48))
    episodes, _ = scan([DataSource(scene)], on_error="raise")
    return scene, episodes, build_samples(episodes, SampleOptions(stop_repeat=1))


def _forbid_decoding(monkeypatch):
    def no_decoding(*args):
        raise AssertionError("a front frame was decoded although the cache holds it")

    monkeypatch.setattr(dataset_module, "load_rgb", no_decoding)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cached_frames_give_the_samples_of_the_plain_path(tmp_path, processor):
    _, episodes, specs = _data(tmp_path / "scene")
    plain = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise")
    cached = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise", frame_cache=tmp_path / "cache")
    assert {s.kind for s in specs} == set(SampleKind)
    for epoch in (0, 1):
        assert all(_same(plain.encode(i, epoch), cached.encode(i, epoch)) for i in range(len(specs)))
    files = sorted((tmp_path / "cache").iterdir())
    assert [f.suffix for f in files] == [".npy", ".npy"]  # one per episode, no temporary file left
    assert [np.load(f).shape for f in files] == [(12, 32, 32, 3)] * 2


def test_a_filled_cache_is_read_not_decoded_again(tmp_path, processor, monkeypatch):
    _, episodes, specs = _data(tmp_path / "scene")
    front_only = [i for i, s in enumerate(specs) if s.kind != SampleKind.PIXEL_GOAL]
    S2Dataset(episodes, specs, processor, resize=(32, 32), frame_cache=tmp_path / "cache").encode(front_only[0])
    S2Dataset(episodes, specs, processor, resize=(32, 32), frame_cache=tmp_path / "cache").encode(front_only[-1])
    expected = [S2Dataset(episodes, specs, processor, resize=(32, 32)).encode(i) for i in front_only]

    _forbid_decoding(monkeypatch)
    second = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise", frame_cache=tmp_path / "cache")
    assert all(_same(e, second.encode(i)) for e, i in zip(expected, front_only))


def test_rewritten_recordings_and_other_sizes_get_their_own_entries(tmp_path, processor):
    scene, episodes, specs = _data(tmp_path / "scene")
    S2Dataset(episodes, specs, processor, resize=(32, 32), frame_cache=tmp_path / "cache").encode(0)
    S2Dataset(episodes, specs, processor, resize=(64, 32), frame_cache=tmp_path / "cache").encode(0)
    assert len(list((tmp_path / "cache").glob("episode_000000_*.npy"))) == 2
    first = next(scene.rglob("episode_000000_0.png"))
    stat = first.stat()
    _, episodes, specs = _data(tmp_path / "scene", seed=7)  # same paths, new pixels
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    plain = S2Dataset(episodes, specs, processor, resize=(32, 32))
    cached = S2Dataset(episodes, specs, processor, resize=(32, 32), frame_cache=tmp_path / "cache")
    assert _same(plain.encode(0), cached.encode(0))
    assert len(list((tmp_path / "cache").glob("episode_000000_*.npy"))) == 3


def test_broken_frames_with_the_cache_are_data_errors(tmp_path, processor):
    scene, episodes, specs = _data(tmp_path / "scene")
    next(scene.rglob("observation.images.rgb.125cm_0deg/episode_000001_5.png")).write_bytes(b"not a png")
    strict = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise", frame_cache=tmp_path / "cache")
    of_episode_1 = next(i for i, s in enumerate(specs) if s.episode == 1 and s.frame < 5)  # does not show frame 5
    with pytest.raises(DataError, match=r"episode 1 of .*cannot read frame .*episode_000001_5\.png"):
        strict.encode(of_episode_1)  # the whole episode is decoded into the cache at once
    with pytest.raises(DataError, match=r"frame 12 out of range"):
        strict.front(0, 12)
    lenient = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="skip", frame_cache=tmp_path / "cache")
    lenient[of_episode_1]
    assert lenient.failures >= 1


def test_cli_option():
    args = ["--data", "d", "--output-dir", "o", "--model", "m"]
    assert config_from_args(build_parser().parse_args(args)).frame_cache is None
    assert config_from_args(build_parser().parse_args([*args, "--frame-cache", "/tmp/c"])).frame_cache == "/tmp/c"


def test_filling_the_cache_before_training_gives_the_same_samples_without_decoding(tmp_path, processor, monkeypatch):
    _, episodes, specs = _data(tmp_path / "scene")
    front_only = [i for i, s in enumerate(specs) if s.kind != SampleKind.PIXEL_GOAL]
    expected = [S2Dataset(episodes, specs, processor, resize=(32, 32)).encode(i) for i in front_only]
    filler = S2Dataset(episodes, specs, processor, resize=(32, 32), frame_cache=tmp_path / "cache")
    assert filler.fill_frame_cache(procs=2) == 2  # both episodes, in worker processes
    assert filler.fill_frame_cache(procs=2) == 0  # nothing left to decode

    _forbid_decoding(monkeypatch)
    cached = S2Dataset(episodes, specs, processor, resize=(32, 32), on_error="raise", frame_cache=tmp_path / "cache")
    assert all(_same(e, cached.encode(i)) for e, i in zip(expected, front_only))


def test_filling_shares_episodes_by_rank_and_leaves_broken_ones_to_the_loader(tmp_path, processor):
    scene, episodes, specs = _data(tmp_path / "scene")
    episodes[1].frame_path(3, False).write_bytes(b"not a png")  # a front frame
    rank1 = S2Dataset(episodes, specs, processor, resize=(32, 32), frame_cache=tmp_path / "cache")
    assert rank1.fill_frame_cache(procs=1, rank=1, world_size=2) == 0  # its one episode is broken
    assert rank1.fill_frame_cache(procs=1, rank=0, world_size=2) == 1
    assert [f.name.split("_")[1] for f in (tmp_path / "cache").iterdir()] == ["000000"]
