"""Model references: a checkpoint directory, or ``tiny:<arch>`` for a built-in tiny random checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

TINY_PREFIX = "tiny:"


def resolve_model_path(ref: str) -> str:
    """Directory to load for ``ref``. ``tiny:qwen3_vl`` builds (once) and returns the cached tiny checkpoint."""
    if ref.startswith(TINY_PREFIX):
        from .tiny import default_tiny_checkpoint

        return str(default_tiny_checkpoint(ref[len(TINY_PREFIX) :]))
    return str(Path(os.path.expanduser(ref)))
