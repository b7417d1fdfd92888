"""The project's persistent compile cache: torch's own compile caches, kept in one project directory.

Which torch caches are used (nothing of our own is cached):

* **Inductor's cache directory** (``TORCHINDUCTOR_CACHE_DIR``, set here to ``<root>/inductor``): the FX
  graph cache (compiled graphs, ``torch._inductor.config.fx_graph_cache``), the AOTAutograd cache
  (``torch._functorch.config.enable_autograd_cache``) and the Triton kernels (``<root>/inductor/triton``;
  ``TRITON_CACHE_DIR`` is left alone when it is set).
* **The cache-artifact API** ("mega-cache": ``torch.compiler.save_cache_artifacts`` /
  ``load_cache_artifacts``): the same artifacts in one portable file per model and torch build
  (``<root>/artifacts/<key>.bin``), written after the fast path is built and loaded before it is built.
  A deployment image carries this file (``python -m internvla_s2_node.cli.prepare_cache``).

Dynamo's tracing is not cached by torch: a warm start still traces the model's Python (seconds), and
CUDA graphs are always captured anew; what the caches save is Inductor's and Triton's compile time.

``root`` is ``compile_cache_dir`` when given, else ``<INTERNVLA_S2_CACHE or ~/.cache/internvla_s2>/compile``;
``off`` leaves torch's defaults untouched (a temporary directory per user).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import tempfile

import torch

log = logging.getLogger(__name__)

OFF = "off"


def cache_root(setting: str = "") -> pathlib.Path | None:
    """The cache directory for a ``compile_cache_dir`` setting ('' = the project default, 'off' = none)."""
    if setting == OFF:
        return None
    if setting:
        return pathlib.Path(setting).expanduser()
    from .tiny import cache_dir

    return cache_dir() / "compile"


def configure(root: pathlib.Path | None) -> dict[str, str]:
    """Point torch's on-disk compile caches at ``root`` (before the first compile); returns where they are."""
    if root is None:
        return {}
    inductor = root / "inductor"
    inductor.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor.resolve())
    try:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        if hasattr(functorch_config, "enable_autograd_cache"):
            functorch_config.enable_autograd_cache = True
    except ImportError:  # a torch without Inductor: nothing is compiled, nothing to cache
        pass
    triton = os.environ.get("TRITON_CACHE_DIR") or str(inductor / "triton")
    return {"inductor": str(inductor), "triton": triton, "artifacts": str(root / "artifacts")}


def artifact_key(backbone, **settings) -> str:
    """A file name for the cache artifacts of this model body, dtype, attention, device and torch build."""
    model = backbone.model
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    config.pop("_name_or_path", None)
    device = torch.device(backbone.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    blob = json.dumps(
        {"config": config, "dtype": str(backbone.dtype), "attn": backbone.attn_implementation, "card": card,
         "torch": torch.__version__, "cuda": torch.version.cuda, "settings": settings},
        sort_keys=True, default=str,
    )  # fmt: skip
    return f"{type(model).__name__}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def artifact_path(root: pathlib.Path | None, key: str) -> pathlib.Path | None:
    return None if root is None else root / "artifacts" / f"{key}.bin"


def load_artifacts(path: pathlib.Path | None) -> bool:
    """Hot-load a saved artifact file into torch's caches; False when there is none or it does not load."""
    if path is None or not path.is_file() or not hasattr(torch.compiler, "load_cache_artifacts"):
        return False
    try:
        info = torch.compiler.load_cache_artifacts(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - another torch build's file: compile from scratch
        info, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = "unreadable"
    if info is None:
        log.warning("compile cache: %s not loaded (%s); compiling from scratch", path, why)
        return False
    log.info("compile cache: loaded %s", path)
    return True


def save_artifacts(path: pathlib.Path | None) -> bool:
    """Write the artifacts this process compiled or loaded to ``path`` (atomically); False if none."""
    if path is None or not hasattr(torch.compiler, "save_cache_artifacts"):
        return False
    try:
        saved = torch.compiler.save_cache_artifacts()
    except Exception as exc:  # noqa: BLE001
        log.warning("compile cache: artifacts not saved (%s: %s)", type(exc).__name__, exc)
        return False
    if not saved or not saved[0]:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(saved[0])
    os.replace(tmp, path)
    log.info("compile cache: saved %s (%d bytes)", path, len(saved[0]))
    return True
