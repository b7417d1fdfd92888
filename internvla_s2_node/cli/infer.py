"""``internvla-s2-infer``: run the S2 engine over a sequence of frames and print the decision as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np
from PIL import Image

from ..core.config import EngineConfig
from ..core.engine import S2Engine
from ..core.geometry import intrinsics_from_hfov
from ..core.types import Frame


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny:qwen3_vl", help="checkpoint directory, or tiny:<arch> (default %(default)s)")
    p.add_argument("--instruction", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--depth", type=float, default=None, help="constant depth (m) to project a pixel goal with")
    p.add_argument("--hfov", type=float, default=79.0, help="horizontal field of view for --depth (deg)")
    p.add_argument("--all-steps", action="store_true", help="print one JSON line per frame, not only the last")
    p.add_argument("images", nargs="+", help="frames in episode order; the last one is the current frame")
    return p.parse_args(argv)


def load_frame(path: str, depth: float | None, hfov: float) -> Frame:
    try:
        rgb = np.asarray(Image.open(path).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"internvla-s2-infer: cannot read image {path!r}: {exc}") from None
    if depth is None:
        return Frame(rgb)
    h, w = rgb.shape[:2]
    return Frame(rgb, np.full((h, w), depth, np.float32), intrinsics_from_hfov(w, h, hfov), np.eye(4))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    frames = [load_frame(p, args.depth, args.hfov) for p in args.images]
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
