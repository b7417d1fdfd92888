"""Validation and conversion of camera frames (numpy only)."""

from __future__ import annotations

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
