"""Image patches as uint8 in the data loader, normalised on the training device.

The processor turns every frame into float32 patches, ``(patches, channels x temporal x patch x patch)``
with each frame repeated over the temporal patch: 4 bytes per value, twice. A sample of 9 frames of
160 x 160 is 3.5 MB, and the loader workers spend their time in the processor's float tensor work
(normalise, patchify, concatenate), not in reading frames. Here a frame that the processor would not
resize (its size is already the one ``smart_resize`` picks) is patchified from its uint8 pixels in
numpy; frames that need resizing still go through the processor and are mapped back to the uint8 values
they were normalised from. The trainer normalises on the device. The model sees the processor's values
(tests/test_train_pixels.py compares them for each backbone).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class Patching:
    """The image processor's patch geometry and normalisation."""

    patch: int
    temporal: int
    merge: int
    min_pixels: int
    max_pixels: int
    scale: tuple[float, ...]  # per channel: rescale_factor / std
    offset: tuple[float, ...]  # per channel: -mean / std

    @classmethod
    def of(cls, image_processor) -> Patching | None:
        """From a Qwen-VL image processor; None when it is not one this module knows."""
        ip = image_processor
        needed = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")
        if not all(getattr(ip, name, None) is not None for name in needed):
            return None
        if not (getattr(ip, "do_rescale", True) and getattr(ip, "do_normalize", True)):
            return None
        size = dict(getattr(ip, "size", {}) or {})
        min_pixels = size.get("shortest_edge") or getattr(ip, "min_pixels", None)
        max_pixels = size.get("longest_edge") or getattr(ip, "max_pixels", None)
        if not (min_pixels and max_pixels):
            return None
        rescale = float(getattr(ip, "rescale_factor", 1 / 255))
        mean, std = np.asarray(ip.image_mean, dtype=np.float64), np.asarray(ip.image_std, dtype=np.float64)
        return cls(ip.patch_size, ip.temporal_patch_size, ip.merge_size, int(min_pixels), int(max_pixels),
                   tuple(rescale / std), tuple(-mean / std))  # fmt: skip

    @property
    def factor(self) -> int:
        return self.patch * self.merge

    def keeps_size(self, width: int, height: int) -> bool:
        """Whether the processor leaves a ``width x height`` image at its size (smart_resize is the identity)."""
        if height % self.factor or width % self.factor:
            return False
        return self.min_pixels <= height * width <= self.max_pixels and max(height, width) / min(height, width) <= 200

    def patchify(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """``(H, W, 3)`` uint8 -> ``(patches, 3 * temporal * patch * patch)`` uint8 and its ``(1, grid_h, grid_w)``,
        in the processor's layout: merge blocks row-major, then (channel, temporal, row, column) per patch."""
        h, w, c = rgb.shape
        p, m = self.patch, self.merge
        gh, gw = h // p, w // p
        x = rgb.transpose(2, 0, 1).reshape(c, gh // m, m, p, gw // m, m, p)
        x = x.transpose(1, 4, 2, 5, 0, 3, 6)  # (gh/m, gw/m, m, m, c, p, p)
        x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], self.temporal, p, p))
        return np.ascontiguousarray(x).reshape(gh * gw, c * self.temporal * p * p), (1, gh, gw)

    def to_uint8(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The processor's normalised patches back to the uint8 values they came from."""
        scale, offset = self._per_column(pixel_values.shape[-1], torch.float64)
        values = (pixel_values.to(torch.float64) - offset) / scale
        return values.round_().clamp_(0, 255).to(torch.uint8)

    def normalize(self, patches: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 patches -> the processor's normalised values, on ``patches``' device."""
        scale, offset = self._per_column(patches.shape[-1], torch.float32, patches.device)
        return (patches.to(torch.float32) * scale + offset).to(dtype)

    def _per_column(self, width: int, dtype: torch.dtype, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        per_channel = width // len(self.scale)
        scale = torch.tensor(self.scale, dtype=dtype, device=device).repeat_interleave(per_channel)
        offset = torch.tensor(self.offset, dtype=dtype, device=device).repeat_interleave(per_channel)
        return scale, offset
