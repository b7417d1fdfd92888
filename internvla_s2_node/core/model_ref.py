"""Model references: a checkpoint directory, or ``tiny:<arch>`` for a built-in tiny random checkpoint."""

from __future__ import annotations

import os
import re
from pathlib import Path

TINY_PREFIX = "tiny:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(ref: str) -> bool:
    """``owner/name`` whose owner is not a local folder (``runs/ckpt`` next to ``runs/`` is a path)."""
    return bool(_HUB_ID.match(ref)) and not Path(ref.split("/")[0]).is_dir()


def check_model_ref(ref: str) -> str:
    """The directory ``ref`` names, checked without loading weights; CheckpointError says what is wrong.

    A ``tiny:<arch>`` must name a known arch (its checkpoint is not built here); a directory must hold a
    readable ``config.json`` of a supported backbone and safetensors files with valid headers.
    """
    from .backbone import CheckpointError, _checkpoint_dir, detect_backbone

    if ref.startswith(TINY_PREFIX):
        from .backbone import BackboneKind

        arch = ref[len(TINY_PREFIX):]
        archs = [k.value for k in BackboneKind]
        if arch not in archs:
            raise CheckpointError(f"{ref}: unknown tiny architecture {arch!r}; use one of tiny:{', tiny:'.join(archs)}")
        return ref
    if (Path(ref).expanduser() / "config.json").is_file():
        detect_backbone(ref)  # config and model type first: cheaper, and the likelier mistake
    return str(_checkpoint_dir(ref))


def resolve_model_path(ref: str) -> str:
    """Directory to load for ``ref``. ``tiny:qwen3_vl`` builds (once) and returns the cached tiny checkpoint."""
    if ref.startswith(TINY_PREFIX):
        from .tiny import default_tiny_checkpoint

        return str(default_tiny_checkpoint(ref[len(TINY_PREFIX) :]))
    return str(Path(os.path.expanduser(ref)))
