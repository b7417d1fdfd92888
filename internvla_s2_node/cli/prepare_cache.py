"""internvla-s2-prepare-cache: compile the fast path once so that later starts find it in the cache.

For a deployment image: run it on the target GPU (same torch, same model) with the image's cache
directory, then ship that directory. It loads the model, builds the fast path on the engine's warm-up
requests (as the node does in the background after configure) and leaves torch's compile caches and
its cache-artifact file there (core/compile_cache.py says which). Prints one JSON line.

    internvla-s2-prepare-cache --model checkpoints/InternVLA-N1-S2 --cache-dir /opt/s2/cache
    # node: compile_cache_dir: /opt/s2/cache   (or INTERNVLA_S2_CACHE=/opt/s2 for /opt/s2/compile)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .errors import ArgumentParser, CliError, UsageError, guarded

PROG = "internvla-s2-prepare-cache"


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory, or tiny:<arch>")
    p.add_argument("--cache-dir", default="", help="compile cache directory (default: $INTERNVLA_S2_CACHE/compile, "
                   "~/.cache/internvla_s2/compile when unset)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--dtype", default="auto", help="as the node's dtype (default %(default)s)")
    p.add_argument("--attn-implementation", default="auto", help="as the node's attn_implementation (default %(default)s)")
    p.add_argument("--num-history", type=int, default=8, help="as the node's num_history (default %(default)s)")
    p.add_argument("--resize", type=int, nargs=2, default=(384, 384), metavar=("W", "H"),
                   help="as the node's resize_w resize_h (default 384 384)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=24, help="as the node's max_new_tokens (default %(default)s)")
    p.add_argument("--prefix-reuse", action="store_true", help="as the node's prefix_reuse (its prefill compiles another way)")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="give up after this long (default %(default)s)")
    return p.parse_args(argv)


def engine_config(args: argparse.Namespace):
    from ..core.config import EngineConfig
    from ..core.model_ref import check_model_ref

    if args.cache_dir == "off":
        raise UsageError("--cache-dir off leaves nothing to prepare; give a directory or leave it out")
    try:
        check_model_ref(args.model)
        return EngineConfig(model_path=args.model, device=args.device, dtype=args.dtype, attn_implementation=args.attn_implementation,
                            num_history=args.num_history, resize_w=args.resize[0], resize_h=args.resize[1],
                            max_new_tokens=args.max_new_tokens, fast_path="on", fast_path_build="background",
                            compile_cache_dir=args.cache_dir, prefix_reuse=args.prefix_reuse)  # fmt: skip
    except ValueError as exc:
        raise UsageError(f"{exc}; see {PROG} --help") from exc
    except Exception as exc:  # a CheckpointError: the message says what is wrong
        if type(exc).__name__ == "CheckpointError":
            raise UsageError(str(exc)) from exc
        raise


@guarded(PROG)
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = engine_config(args)
    from ..core.engine import S2Engine

    t0 = time.perf_counter()
    engine = S2Engine(cfg)
    loaded = time.perf_counter() - t0
    engine.build_now()
    build = engine.fast_build
    done = build.wait(args.timeout_s)
    result = {"model": args.model, "load_s": round(loaded, 2), "build_s": build.seconds, "state": build.state, "error": build.error,
              "cache": engine.compile_cache, "failures": dict(getattr(build.result, "failures", {}) or {})}  # fmt: skip
    print(json.dumps(result), flush=True)
    if not done or build.state != "ready":
        raise CliError(f"the fast path was not built ({build.state}{': ' + build.error if build.error else ''}); "
                       "the cache may be incomplete: rerun with --debug")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
