"""M-RoPE position ids of a training sample, computed in the data loader.

Without them the model computes the positions in its forward (``get_rope_index``): a Python loop over the
batch's samples and their images, on the training device, with a host sync for every image's grid. Here
each sample's positions are computed on the CPU by the loader's worker and the trainer passes them as
``position_ids``. The rule, for images (the only visual input in training), is the Qwen-VL one: text
tokens count up on all three axes; an image's tokens take (t, row, column) offsets from the position
after the text before it; the text after an image continues at that position plus the merged grid's
larger side. tests/test_train_positions.py compares it with each backbone's own ``get_rope_index``.
"""

from __future__ import annotations

import itertools

import torch


def mrope_positions(mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor | None, merge: int) -> torch.Tensor:
    """``(3, length)`` positions of one sample from its token types (0 text, 1 image) and image grids."""
    types = mm_token_type_ids.tolist()
    grids = image_grid_thw.tolist() if image_grid_thw is not None else []
    out = torch.empty(3, len(types), dtype=torch.long)
    pos, start, image = 0, 0, 0
    for kind, run in itertools.groupby(types):
        end = start + len(list(run))
        if kind == 0:
            out[:, start:end] = torch.arange(pos, pos + end - start)
            pos += end - start
        else:
            t, h, w = grids[image]
            h, w = h // merge, w // merge
            if end - start != t * h * w:
                raise ValueError(f"image {image}: {end - start} image tokens for a merged grid of {t}x{h}x{w}")
            grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"))
            out[:, start:end] = grid.reshape(3, -1) + pos
            pos += max(h, w)  # t is 1 for images
            image += 1
        start = end
    return out
