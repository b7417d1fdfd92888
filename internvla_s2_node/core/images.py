"""Validation and conversion of camera frames (numpy only)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
from PIL import Image


class InvalidFrame(ValueError):
    """A frame that cannot be used; the message says why."""


def as_rgb(frame: object) -> np.ndarray:
    """An HxWx3 uint8 array from HxW (gray), HxWx1, HxWx3 or HxWx4 (alpha dropped) uint8 input."""
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    if not isinstance(frame, np.ndarray):
        raise InvalidFrame(f"frame must be a numpy array or PIL image, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InvalidFrame(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise InvalidFrame(f"frame must be HxW, HxWx1, HxWx3 or HxWx4, got shape {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise InvalidFrame(f"frame is too small: {frame.shape[1]}x{frame.shape[0]}")
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> Image.Image:
    """The model-input copy of a frame (PIL bicubic, as upstream's ``Image.resize``)."""
    image = Image.fromarray(rgb)
    if image.size != (width, height):
        image = image.resize((width, height), Image.BICUBIC)
    return image


class FrameResizer:
    """``resize_rgb`` with the same pixels, sped up by resizing horizontal bands of the output in threads.

    Pillow's resampler is separable and computes each output row from a window of input rows whose
    centre is ``box_top + (row + 0.5) * scale``. A band of output rows resized from the matching input
    box therefore gets the same coefficients as the whole image when the band's top maps to an integer
    input row and ``scale`` is exact in binary (the camera-to-model ratios: 480/384 = 5/4, 720/384 = 15/8,
    1080/384 = 45/16). Pillow releases the interpreter lock while it resamples, so bands run at once.
    Other sizes, upscaling and single-core hosts take the one-call path. Each new pair of sizes is
    checked once against the one call on a random probe; a mismatch keeps that pair on the one call.
    The node records every frame this way, on the frame's path: on the H200 host's CPU, 640x480 -> 384x384
    took 7.70 ms in one call and 2.95 ms in 4 bands (benchmarks/results/cpu_preprocess_h200-host-xeon_2026-12-03.md).
    By default it uses half the cores, 2 to 8 (the rest stay for DDS and the executor).
    """

    def __init__(self, threads: int | None = None) -> None:
        cores = os.cpu_count() or 1
        self.threads = max(1, threads if threads is not None else (1 if cores < 2 else min(8, max(2, cores // 2))))
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="s2_resize") if self.threads > 1 else None
        self._plans: dict[tuple[int, int, int, int], list[int] | None] = {}
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray, width: int, height: int) -> Image.Image:
        h_in, w_in = rgb.shape[:2]
        cuts = self._plan(w_in, h_in, width, height)
        pool = self._pool
        if cuts is not None and pool is not None:
            try:
                return self._banded(pool, Image.fromarray(rgb), width, height, cuts)
            except RuntimeError:  # closed by another thread meanwhile (the engine's cleanup)
                pass
        return resize_rgb(rgb, width, height)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _plan(self, w_in: int, h_in: int, width: int, height: int) -> list[int] | None:
        key = (w_in, h_in, width, height)
        with self._lock:
            if key in self._plans:
                return self._plans[key]
        pool = self._pool
        cuts = band_cuts(w_in, h_in, width, height, self.threads) if pool is not None else None
        if cuts is not None:
            probe = np.random.default_rng(0).integers(0, 256, (h_in, w_in, 3), dtype=np.uint8)
            same = np.array_equal(np.asarray(self._banded(pool, Image.fromarray(probe), width, height, cuts)),
                                  np.asarray(resize_rgb(probe, width, height)))
            cuts = cuts if same else None
        with self._lock:
            self._plans[key] = cuts
        return cuts

    @staticmethod
    def _banded(pool: ThreadPoolExecutor, image: Image.Image, width: int, height: int, cuts: list[int]) -> Image.Image:
        scale = image.height / height

        def band(top: int, bottom: int) -> Image.Image:
            box = (0.0, top * scale, float(image.width), bottom * scale)
            return image.resize((width, bottom - top), Image.BICUBIC, box=box)

        spans = list(zip(cuts[:-1], cuts[1:]))
        futures = [pool.submit(band, *s) for s in spans[1:]]
        parts = [band(*spans[0])] + [f.result() for f in futures]
        out = Image.new("RGB", (width, height))
        for (top, _), part in zip(spans, parts):
            out.paste(part, (0, top))
        return out


def band_cuts(w_in: int, h_in: int, width: int, height: int, bands: int) -> list[int] | None:
    """Output rows at which ``FrameResizer`` may split a ``w_in x h_in -> width x height`` resize into
    ``bands`` bands with unchanged pixels, or None (one call): see ``FrameResizer``."""
    if bands < 2 or not (w_in > width and h_in > height):
        return None
    ratio = Fraction(h_in, height)
    if ratio.denominator & (ratio.denominator - 1):  # scale not exact in binary
        return None
    step = ratio.denominator  # rows whose input position top * ratio is an integer
    cuts = [0]
    for i in range(1, bands):
        cut = round(height * i / bands / step) * step
        if cuts[-1] < cut < height:
            cuts.append(cut)
    cuts.append(height)
    return cuts if len(cuts) > 2 else None
