"""Frame cache and image preprocessing: each frame preprocessed once (on the GPU where that gives the
CPU's exact pixels), kept under its key until evicted (LRU)."""

from __future__ import annotations

import dataclasses
import logging

import torch

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _FrameEntry:
    grid: tuple[int, int, int]
    n_tokens: int
    size: tuple[int, int] | None
    pixels: torch.Tensor | None = None  # on the device, model dtype; dropped once encoded
    feats: tuple[torch.Tensor, list[torch.Tensor]] | None = None  # merged tokens, deepstack features




class FramesMixin:
    """``FastGenerator``'s frame cache (state: ``_frames``, ``cache_frames``, ``_device_pp_ok``)."""

    def _entry(self, frames, key, image) -> _FrameEntry:
        size = getattr(image, "size", None)
        size = tuple(size) if isinstance(size, tuple) else None
        if key is not None:
            entry = frames.get(key)
            if entry is not None and entry.size == size:
                self.stats["frame_hits"] += 1
                return entry
        out = self._preprocess(image, size)
        grid = tuple(int(x) for x in out["image_grid_thw"][0].tolist())
        n_tokens = grid[0] * grid[1] * grid[2] // (self.merge**2)
        pixels = out["pixel_values"].to(device=self.device, dtype=self.dtype)
        self.stats["frames_preprocessed"] += 1
        return _FrameEntry(grid=grid, n_tokens=n_tokens, size=size, pixels=pixels)

    def _preprocess(self, image, size):
        ok = self._device_pp_ok.get(size) if self.device_preprocess else False
        if ok:
            return self.image_processor(images=[image], return_tensors="pt", device=str(self.device))
        out = self.image_processor(images=[image], return_tensors="pt")
        if ok is None:  # first frame of this size: does the device give the exact same pixels?
            try:
                dev = self.image_processor(images=[image], return_tensors="pt", device=str(self.device))
                same = torch.equal(dev["pixel_values"].to(out["pixel_values"].device), out["pixel_values"]) and torch.equal(
                    dev["image_grid_thw"].cpu(), out["image_grid_thw"].cpu()
                )
            except Exception as exc:  # noqa: BLE001 - a processor without device support
                log.info("fast path: image preprocessing stays on the CPU (%s)", exc)
                same = False
            self._device_pp_ok[size] = same
            self.stats["device_preprocess_sizes" if same else "cpu_preprocess_sizes"] += 1
        return out

    def _store(self, frames, keys, entries) -> None:
        for key, entry in zip(keys, entries):
            if key is None:
                continue
            entry.pixels = None
            frames[key] = entry
            frames.move_to_end(key)
        while len(frames) > self.cache_frames:
            frames.popitem(last=False)
            self.stats["frames_evicted"] += 1
