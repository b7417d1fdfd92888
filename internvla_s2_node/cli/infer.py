"""internvla-s2-infer: run the S2 engine over a sequence of frames and print the decision as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys

import numpy as np
from PIL import Image

from .errors import ArgumentParser, UsageError, guarded

PROG = "internvla-s2-infer"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _device(value: str) -> str:
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return value


def _instruction(value: str) -> str:
    from ..core.prompt import clean_instruction

    if not clean_instruction(value):
        raise argparse.ArgumentTypeError("is empty; give the navigation instruction, e.g. --instruction 'go to the kitchen'")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--model", default="tiny:qwen3_vl", help="checkpoint directory, or tiny:<arch> (default %(default)s)")
    p.add_argument("--instruction", required=True, type=_instruction, help="the navigation instruction")
    p.add_argument("--device", default="auto", type=_device,
                   help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="generation limit per step (default %(default)s)")
    p.add_argument("--depth", type=float, default=None, help="constant depth (m) to project a pixel goal with")
    p.add_argument("--hfov", type=float, default=79.0, help="horizontal field of view for --depth (deg, default %(default)s)")
    p.add_argument("--all-steps", action="store_true", help="print one JSON line per frame, not only the last")
    p.add_argument("images", nargs="+", help="frames in episode order; the last one is the current frame")
    return p.parse_args(argv)


def load_frame(path: str, depth: float | None, hfov: float):
    from ..core.geometry import intrinsics_from_hfov
    from ..core.images import InvalidFrame, as_rgb
    from ..core.types import Frame

    try:
        rgb = as_rgb(np.asarray(Image.open(path).convert("RGB")))
    except InvalidFrame as exc:
        raise UsageError(f"image {path!r}: {exc}; pass camera frames of at least 2x2 pixels") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read image {path!r} ({exc}); pass PNG or JPEG frames") from None
    if depth is None:
        return Frame(rgb)
    h, w = rgb.shape[:2]
    return Frame(rgb, np.full((h, w), depth, np.float32), intrinsics_from_hfov(w, h, hfov), np.eye(4))


def check_inputs(args: argparse.Namespace) -> list:
    """Everything the user gave, checked before the model loads (UsageError); returns the frames."""
    from ..core.backbone import CheckpointError, resolve_device
    from ..core.model_ref import check_model_ref

    try:
        check_model_ref(args.model)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from exc
    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(f"--device {args.device}: {exc}; use --device cpu or auto") from exc
    return [load_frame(p, args.depth, args.hfov) for p in args.images]


@guarded(PROG)
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    frames = check_inputs(args)
    from ..core.config import EngineConfig
    from ..core.engine import S2Engine

    # inline: a one-shot run compiles in its first step rather than racing a background build to the exit
    engine = S2Engine(EngineConfig(model_path=args.model, device=args.device, max_new_tokens=args.max_new_tokens, fast_path_build="inline"))
    engine.reset(args.instruction)
    for i, (path, frame) in enumerate(zip(args.images, frames)):
        decision = engine.step(frame)
        if args.all_steps or i == len(args.images) - 1:
            print(json.dumps({"frame": path, **decision.to_json(), "engine": engine.info}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
