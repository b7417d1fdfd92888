"""The torch Dataset: a sample spec becomes frames, a conversation, then tensors.

Frames are prepared as the engine prepares them: history and current frames resized to
``resize_w x resize_h`` (core.images.resize_rgb), the look-down frame at full resolution
(its pixel goal is in that frame's pixels). With ``frame_cache`` each episode's front frames
are decoded and resized once and kept as one uint8 ``.npy`` per episode (the same arrays, so the
model sees the same pixels: tests/test_train_frame_cache.py). The conjunction phrases are drawn from a
generator seeded by (seed, sample index, epoch), so every process builds the same text and
each epoch draws new phrases (as upstream draws them at every fetch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing
import os
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.images import as_rgb, resize_rgb
from .collate import encode_conversation
from .positions import mrope_positions
from .lerobot_data import DataError, Episode
from .samples import SampleKind, SampleSpec, build_messages, history_of

log = logging.getLogger(__name__)
OPEN_EPISODES = 2048  # memory maps of cached episodes kept open per process


def load_rgb(episode: Episode, frame: int, look_down: bool) -> np.ndarray:
    path = episode.frame_path(frame, look_down)
    try:
        with Image.open(path) as image:
            return as_rgb(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"episode {episode.index} of {episode.scene}: cannot read frame {path} ({exc})") from exc


class S2Dataset(torch.utils.data.Dataset):
    def __init__(
        self,
        episodes: list[Episode],
        specs: list[SampleSpec],
        processor,
        num_history: int = 8,
        resize: tuple[int, int] = (384, 384),
        seed: int = 0,
        on_error: str = "skip",
        max_retries: int = 8,
        frame_cache: str | os.PathLike | None = None,
        patching=None,
        rope_merge: int | None = None,
    ) -> None:
        self.episodes = episodes
        self.specs = specs
        self.processor = processor
        self.frame_cache = Path(frame_cache) if frame_cache else None
        self.patching = patching  # train.pixels.Patching: uint8 pixel values, normalised by the trainer
        self.rope_merge = rope_merge  # spatial merge size: M-RoPE positions computed here (train.positions)
        self._open: dict[int, np.ndarray] = {}  # episode id -> its cached frames (memory-mapped), per process
        self.num_history = num_history
        self.resize = resize
        self.seed = seed
        self.on_error = on_error
        self.max_retries = max_retries
        self.failures = 0  # per process (each DataLoader worker counts its own)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        """Sample ``key`` (an index, or ``(index, epoch)`` from GlobalBatchSampler: the epoch varies the
        conjunction phrases as upstream's per-fetch random choice does). With ``on_error="skip"`` a broken
        sample is logged, counted and replaced by the next one."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        for attempt in range(self.max_retries + 1):
            i = (index + attempt) % len(self.specs)
            try:
                return self.encode(i, epoch)
            except DataError as exc:
                if self.on_error == "raise":
                    raise
                self.failures += 1
                log.warning("skipping sample %d (%d skipped in this process): %s", i, self.failures, exc)
        raise DataError(f"{self.max_retries + 1} samples in a row from index {index} are broken; see the warnings above")

    def conversation(self, index: int, epoch: int = 0) -> tuple[list[dict], list[Image.Image]]:
        """The sample's messages (answers included) and its images in prompt order."""
        spec = self.specs[index]
        episode = self.episodes[spec.episode]
        history = [self.front(spec.episode, t) for t in history_of(spec, self.num_history)]
        current = self.front(spec.episode, spec.frame)
        look_down = None
        if spec.kind == SampleKind.PIXEL_GOAL:
            look_down = Image.fromarray(load_rgb(episode, spec.frame, True))
            _check_pixel(spec, look_down, episode)
        rng = random.Random(f"{self.seed}:{index}:{epoch}")
        messages = build_messages(spec, history, current, look_down, rng)
        images = [*history, current] + ([look_down] if look_down is not None else [])
        return messages, images

    def front(self, episode_id: int, frame: int) -> Image.Image:
        """History/current frame ``frame`` of episode ``episode_id``, resized to the model input."""
        episode = self.episodes[episode_id]
        width, height = self.resize
        if self.frame_cache is None:
            return resize_rgb(load_rgb(episode, frame, False), width, height)
        frames = self._open.get(episode_id)
        if frames is None:
            if len(self._open) >= OPEN_EPISODES:
                self._open.pop(next(iter(self._open)))
            frames = self._open[episode_id] = self._cached_fronts(episode)
        if not 0 <= frame < len(frames):
            episode.frame_path(frame, False)  # raises the out-of-range DataError
        return Image.fromarray(np.asarray(frames[frame]))

    def fill_frame_cache(self, procs: int, rank: int = 0, world_size: int = 1) -> int:
        """Caches the front frames of this rank's share of the episodes, ``procs`` episodes at a time, before
        training; returns how many episodes it decoded. Without it the first epoch decodes each episode inside
        a loader worker when a sample first needs it, and a step waits on that. An episode that cannot be
        read is left to the loader, which skips or raises as ``on_error`` says."""
        if self.frame_cache is None:
            return 0
        global _FILLING
        todo = [i for i in range(rank, len(self.episodes), world_size) if not self._is_cached(self.episodes[i])]
        if not todo:
            return 0
        _FILLING = self  # forked workers inherit it: no pickled dataset per task
        try:
            with multiprocessing.get_context("fork").Pool(max(1, procs)) as pool:
                return sum(pool.imap_unordered(_fill_one, todo, chunksize=4))
        finally:
            _FILLING = None

    def _is_cached(self, episode: Episode) -> bool:
        try:
            path = self._cache_path(episode)
        except DataError:
            return False
        return self._read_cached(path, episode) is not None

    def _cache_path(self, episode: Episode) -> Path:
        return self.frame_cache / f"{_cache_key(episode, self.resize)}.npy"

    def _read_cached(self, path: Path, episode: Episode) -> np.ndarray | None:
        """The episode's cached frames, memory-mapped; None when the file is missing, unreadable or another size."""
        try:
            frames = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None
        return frames if frames.shape == (episode.length, self.resize[1], self.resize[0], 3) else None

    def _cached_fronts(self, episode: Episode) -> np.ndarray:
        path = self._cache_path(episode)
        frames = self._read_cached(path, episode)
        if frames is not None:
            return frames
        width, height = self.resize
        frames = np.stack([np.asarray(resize_rgb(load_rgb(episode, t, False), width, height)) for t in range(episode.length)])
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp, frames)
            os.replace(tmp, path)  # workers may race on an episode: both write the same bytes
        except OSError as exc:
            log.warning("frame cache: cannot write %s (%s); this episode's frames stay in memory", path, exc)
        return frames

    def encode(self, index: int, epoch: int = 0) -> dict[str, torch.Tensor]:
        messages, images = self.conversation(index, epoch)
        out = encode_conversation(self.processor, messages, images, self.patching)
        if self.rope_merge:
            out["position_ids"] = mrope_positions(out["mm_token_type_ids"], out.get("image_grid_thw"), self.rope_merge)
        return out


_FILLING: S2Dataset | None = None  # the dataset whose frame cache the forked fill workers fill


def _fill_one(episode_id: int) -> int:
    try:
        _FILLING._cached_fronts(_FILLING.episodes[episode_id])
        return 1
    except DataError:
        return 0


def _cache_key(episode: Episode, resize: tuple[int, int]) -> str:
    """Names the cached frames by their source folder, episode, size and first frame's mtime and size."""
    first = episode.frame_path(0, False)
    try:
        stat = first.stat()
        stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
    except OSError as exc:
        raise DataError(f"episode {episode.index} of {episode.scene}: cannot read frame {first} ({exc})") from exc
    source = f"{first.parent.resolve()}|{episode.index}|{episode.length}|{resize[0]}x{resize[1]}|{stamp}"
    return f"episode_{episode.index:06d}_{hashlib.sha1(source.encode()).hexdigest()[:16]}"


def _check_pixel(spec: SampleSpec, look_down: Image.Image, episode: Episode) -> None:
    column, row = spec.pixel
    width, height = look_down.size
    if not (0 <= column < width and 0 <= row < height):
        raise DataError(
            f"episode {episode.index} of {episode.scene}: pixel goal ({column}, {row}) at frame {spec.frame} "
            f"is outside the {width}x{height} look-down frame"
        )


def prepare_data(cfg, processor):
    """Scan the data folders, build the sample list and the Dataset; returns (dataset, report dict)."""
    from collections import Counter

    from .layout import CameraSetup
    from .lerobot_data import DataSource, scan
    from .samples import SampleOptions, build_samples

    default = CameraSetup(cfg.height_cm, cfg.front_pitch, cfg.down_pitch)
    sources = [DataSource.parse(spec, default) for spec in cfg.data]
    episodes, report = scan(sources, on_error="raise" if cfg.on_bad_data == "raise" else "skip")
    opts = SampleOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(SampleOptions)})  # same names in TrainConfig
    specs = build_samples(episodes, opts)
    if cfg.max_samples:
        specs = specs[: cfg.max_samples]
    kinds = Counter(s.kind.value for s in specs)
    summary = {**report.to_json(), "summary": report.summary(), "samples": len(specs), "samples_by_kind": dict(kinds)}
    if not specs:
        raise NoSamples(f"no training samples in {cfg.data}: {report.summary()}{_first_reasons(report.skipped)}", summary)
    from .pixels import Patching

    patching = Patching.of(processor.image_processor) if processor is not None else None
    dataset = S2Dataset(
        episodes, specs, processor, cfg.num_history, (cfg.resize_w, cfg.resize_h), cfg.seed, cfg.on_bad_data,
        frame_cache=cfg.frame_cache, patching=patching, rope_merge=getattr(getattr(processor, "image_processor", None), "merge_size", None),
    )  # fmt: skip
    return dataset, summary


class NoSamples(DataError):
    """No sample to train on; ``report`` is the data report (written as data_report.json all the same)."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


def _first_reasons(skipped: list[str], count: int = 3) -> str:
    if not skipped:
        return ""
    more = f" (and {len(skipped) - count} more)" if len(skipped) > count else ""
    return "; first reasons: " + " | ".join(skipped[:count]) + more
