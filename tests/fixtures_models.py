"""Shared tiny-model fixtures. Use them from a test module with

    from fixtures_models import tiny_checkpoint, tiny_backbone  # noqa: F401  (pytest fixtures)

``tiny_checkpoint(arch)`` gives the path of a tiny random checkpoint (built once per
machine under ``$INTERNVLA_S2_CACHE``, default ``~/.cache/internvla_s2``, safely across
concurrent pytest processes); ``tiny_backbone(arch)`` gives it loaded on CPU in float32,
once per session. Arch is one of ``ARCHS``; the default is ``"qwen3_vl"``.
Random weights: use them for plumbing, shapes and timing, never for navigation quality.
"""

from __future__ import annotations

import pathlib

import pytest
import torch

from internvla_s2_node.core.backbone import LoadedBackbone, load_backbone
from internvla_s2_node.core.tiny import ARCHS, default_tiny_checkpoint

__all__ = ["ARCHS", "tiny_checkpoint", "tiny_backbone", "tiny_image_tokens"]

# Tokens per 384x384 frame on the released checkpoints (and the tiny ones).
tiny_image_tokens = {"qwen3_vl": 144, "qwen3_vl_moe": 144, "qwen2_5_vl": 196, "qwen2_vl": 196}


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """Factory: ``tiny_checkpoint(arch="qwen3_vl") -> pathlib.Path``."""

    def get(arch: str = "qwen3_vl") -> pathlib.Path:
        torch.set_num_threads(1)  # the test machine's cores are shared
        return default_tiny_checkpoint(arch)

    return get


@pytest.fixture(scope="session")
def tiny_backbone(tiny_checkpoint):
    """Factory: ``tiny_backbone(arch="qwen3_vl") -> LoadedBackbone`` (CPU, float32, shared by the session)."""
    loaded: dict[str, LoadedBackbone] = {}

    def get(arch: str = "qwen3_vl") -> LoadedBackbone:
        if arch not in loaded:
            loaded[arch] = load_backbone(tiny_checkpoint(arch), device="cpu", dtype="float32")
        return loaded[arch]

    return get
