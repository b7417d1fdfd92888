"""Fast path against plain path on a trained checkpoint and real recorded frames.

Replays recorded episodes (LeRobot layout, e.g. from ``internvla-s2-eval --policy oracle --record``)
call by call as the engine builds them: linspace history plus the current frame, and every third
step a look-down second turn. Reports how many calls give the same answer tokens:

* fast vs plain, both float32 (should be all of them);
* float32 vs bfloat16, plain path (bf16 agreement);
* fast vs plain, both bfloat16;
* fast with prefix reuse (``FastGenerator(prefix_reuse=True)``) vs fast, float32 and bfloat16, with the
  prefix hit (kept / prompt tokens) over the calls.

    python benchmarks/navigator_agreement.py --model CKPT --data REC_DIR --device cpu --out result.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from internvla_s2_node.core import prompt  # noqa: E402
from internvla_s2_node.core.backbone import load_backbone  # noqa: E402
from internvla_s2_node.core.fast_generation import make_fast_generator  # noqa: E402
from internvla_s2_node.core.fast_generation.generator import FastGenerator  # noqa: E402
from internvla_s2_node.core.generation import PlainGenerator  # noqa: E402
from internvla_s2_node.core.history import history_indices  # noqa: E402
from internvla_s2_node.core.images import resize_rgb  # noqa: E402
from internvla_s2_node.train.layout import CameraSetup  # noqa: E402
from internvla_s2_node.train.lerobot_data import DataSource, scan  # noqa: E402


def episode_calls(episode, resize, num_history=8, look_down_every=3, max_steps=30):
    """(messages, images, keys) per S2 call over one recorded episode, as the engine makes them."""
    frames, calls = {}, []
    picker = prompt.ConjunctionPicker(0, "random")
    instruction = episode.instructions[0]

    def front(i):
        if i not in frames:
            frames[i] = resize_rgb(np.asarray(Image.open(episode.frame_path(i, False)).convert("RGB")), *resize)
        return frames[i]

    for t in range(min(episode.length, max_steps)):
        hist = history_indices(t, num_history)
        images = [front(i) for i in hist] + [front(t)]
        messages = [prompt.user_message(prompt.build_user_text(instruction, len(hist), picker.pick()), images)]
        calls.append((messages, images, hist + [t]))
        if t % look_down_every == look_down_every - 1:
            down = Image.open(episode.frame_path(t, True)).convert("RGB")
            second = messages + [prompt.assistant_message("↓"),
                                 prompt.user_message(prompt.build_look_down_text(picker.pick()), [down])]
            calls.append((second, images + [down], hist + [t, None]))
    return calls


def answers(generator, episodes_calls):
    out, seconds = [], 0.0
    for calls in episodes_calls:
        generator.reset()
        for messages, images, keys in calls:
            start = time.perf_counter()
            out.append(generator.generate(messages, images, keys).token_ids)
            seconds += time.perf_counter() - start
    return out, seconds / max(len(out), 1)


def agreement(a, b) -> dict:
    same = sum(x == y for x, y in zip(a, b))
    return {"calls": len(a), "same_tokens": same, "fraction": round(same / max(len(a), 1), 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="recorded episodes (a scene folder or a folder of scenes)")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resize", type=int, nargs=2, default=(160, 160))
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    episodes, _ = scan([DataSource(pathlib.Path(args.data), CameraSetup())], on_error="skip")
    calls = [episode_calls(ep, tuple(args.resize)) for ep in episodes[: args.episodes]]
    result = {"model": args.model, "device": args.device, "episodes": len(calls), "calls": sum(map(len, calls))}
    tokens = {}
    for dtype in ("float32", "bfloat16"):
        backbone = load_backbone(args.model, device=args.device, dtype=dtype, attn_implementation="sdpa")
        plain = PlainGenerator(backbone, args.max_new_tokens)
        fast = make_fast_generator(backbone, args.max_new_tokens, required=True)
        tokens[("plain", dtype)], result[f"plain_{dtype}_s_per_call"] = answers(plain, calls)
        tokens[("fast", dtype)], result[f"fast_{dtype}_s_per_call"] = answers(fast, calls)
        reuse = FastGenerator(backbone, args.max_new_tokens, prefix_reuse=True)
        tokens[("reuse", dtype)], result[f"fast_prefix_reuse_{dtype}_s_per_call"] = answers(reuse, calls)
        result[f"prefix_hit_{dtype}"] = round(reuse.stats["prefix_tokens_reused"] / max(reuse.stats["prompt_tokens"], 1), 4)
    result["fast_vs_plain_float32"] = agreement(tokens[("fast", "float32")], tokens[("plain", "float32")])
    result["bfloat16_vs_float32_plain"] = agreement(tokens[("plain", "bfloat16")], tokens[("plain", "float32")])
    result["fast_vs_plain_bfloat16"] = agreement(tokens[("fast", "bfloat16")], tokens[("plain", "bfloat16")])
    result["prefix_reuse_vs_fast_float32"] = agreement(tokens[("reuse", "float32")], tokens[("fast", "float32")])
    result["prefix_reuse_vs_fast_bfloat16"] = agreement(tokens[("reuse", "bfloat16")], tokens[("fast", "bfloat16")])
    result["prefix_reuse_bfloat16_vs_plain_float32"] = agreement(tokens[("reuse", "bfloat16")], tokens[("plain", "float32")])
    result["distinct_answers_float32"] = len({tuple(t) for t in tokens[("plain", "float32")]})
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
