"""Host (CPU) cost of one S2 step before the model runs, per stage, on this machine.

Stages, as the node runs them for a camera frame:
  * ``deserialize``   sensor_msgs/Image bytes -> message (what rclpy does before the callback),
  * ``to_rgb``        message -> HxWx3 uint8 RGB (``ros.conversions.image_to_rgb``; bgr8 needs a channel swap),
  * ``resize``        RGB -> the model's 384x384 PIL frame (``images.as_rgb`` + ``images.resize_rgb``), and the
                      same pixels in bands on 2 and 4 threads (``images.FrameResizer``, the engine's history record),
  * ``depth``         16UC1 depth message -> float32 metres (``ros.conversions.image_to_depth``), next to the
                      conversion it replaced (astype, multiply, then ``isfinite & > 0`` over the float image),
  * ``fast_prep``     the fast path's per-step preprocessing (chat template, the new frame through the
                      image processor, token ids): ``FastGenerator._entry`` / ``_token_ids``, CPU only,
  * ``plain_prep``    upstream's per-step preprocessing (chat template + processor on all 9 frames).

    python benchmarks/cpu_preprocess.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from timing import time_calls, write_json_md  # noqa: E402  (benchmarks/, the script's folder)

from internvla_s2_node.core import prompt
from internvla_s2_node.core.images import FrameResizer, as_rgb, resize_rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-model", action="store_true", help="the frame stages only (no tiny checkpoints: fast_prep, plain_prep)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = subprocess.run("lscpu | grep 'Model name' | head -1 | sed 's/.*: *//'", shell=True, capture_output=True, text=True).stdout.strip()
    env = {
        "date": args.date,
        "cpu": cpu or platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "frame": f"{args.width}x{args.height}",
    }
    import transformers

    env["transformers"] = transformers.__version__
    rng = np.random.default_rng(0)
    h, w = args.height, args.width
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    rows: dict[str, dict] = {}

    try:
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import Image as ImageMsg

        from internvla_s2_node.ros.conversions import image_to_rgb

        from internvla_s2_node.ros.conversions import depth_to_image, image_to_depth

        depth_msg = depth_to_image(rng.uniform(0.2, 6.0, (h, w)).astype(np.float32), "16UC1")

        def depth_before():
            mm = np.frombuffer(depth_msg.data, dtype="<u2").reshape(h, w)
            depth = mm.astype(np.float32) * np.float32(0.001)
            with np.errstate(invalid="ignore"):
                return depth, (np.isfinite(depth) & (depth > 0)).any()

        rows["depth 16UC1 -> metres, before (two passes + isfinite & > 0)"] = time_calls(depth_before, args.reps)
        rows["depth 16UC1 -> metres (image_to_depth)"] = time_calls(lambda: image_to_depth(depth_msg), args.reps)
        for enc in ("rgb8", "bgr8"):
            msg = ImageMsg(height=h, width=w, encoding=enc, step=w * 3, is_bigendian=0)
            msg.data = rgb.tobytes()
            raw = serialize_message(msg)
            rows[f"deserialize ({enc})"] = time_calls(lambda: deserialize_message(raw, ImageMsg), args.reps)
            rows[f"to_rgb ({enc})"] = time_calls(lambda: image_to_rgb(msg), args.reps)
    except ImportError as exc:
        print("no rclpy here, skipping the message stages:", exc)
    rows["resize to 384x384"] = time_calls(lambda: resize_rgb(as_rgb(rgb), 384, 384), args.reps)
    for threads in (2, 4, 8):
        resizer = FrameResizer(threads)
        resizer(rgb, 384, 384)  # its one-time check of the band plan
        rows[f"resize to 384x384, {threads} bands in threads (FrameResizer)"] = time_calls(lambda: resizer(as_rgb(rgb), 384, 384), args.reps)
        resizer.close()

    if not args.no_model:
        model_stages(rows, rng, h, w, args.reps)
    write(rows, env, args)


def model_stages(rows: dict, rng, h: int, w: int, reps: int) -> None:
    from internvla_s2_node.core.backbone import load_backbone
    from internvla_s2_node.core.fast_generation import FastGenerator
    from internvla_s2_node.core.history import history_indices
    from internvla_s2_node.core.tiny import default_tiny_checkpoint

    frames = [resize_rgb(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), 384, 384) for _ in range(20)]
    for arch in ("qwen3_vl", "qwen2_5_vl"):
        b = load_backbone(default_tiny_checkpoint(arch), device="cpu", dtype="float32")
        fast = FastGenerator(b, 8, device_preprocess=False)
        t = 19
        hist = history_indices(t, 8)
        images = [frames[i] for i in hist] + [frames[t]]
        keys = hist + [t]
        messages = [prompt.user_message(prompt.build_user_text("go to the kitchen and stop at the table", len(hist), "you can see "), images)]
        cache = {k: fast._entry({}, k, im) for k, im in zip(keys[:-1], images[:-1])}

        def fast_prep():
            text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            entries = [cache[k] if k in cache else fast._entry({}, k, im) for k, im in zip(keys, images)]
            fast._token_ids(text, entries)

        def plain_prep():
            text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            b.processor(text=[text], images=list(images), return_tensors="pt")

        rows[f"fast_prep ({arch}: template + 1 new frame + ids)"] = time_calls(fast_prep, reps)
        rows[f"  of which image processor, 1 frame ({arch})"] = time_calls(lambda: b.processor.image_processor(images=[frames[0]], return_tensors="pt"), reps)
        rows[f"plain_prep ({arch}: template + processor on 9 frames)"] = time_calls(plain_prep, max(10, reps // 3))


def write(rows: dict, env: dict, args) -> None:
    md = [
        f"Host cost per S2 step before the model runs: {env['cpu']} ({env['cpu_count']} cores, torch threads {env['torch_threads']}, "
        f"load average {', '.join(f'{x:.1f}' for x in env['load_average'])} while measuring), {env['date']}, Python {env['python']}, "
        f"torch {env['torch']}, transformers {env['transformers']}; camera frame {env['frame']}.",
        "",
        "| stage | p50 ms | p90 ms | min ms |",
        "|---|---|---|---|",
    ]
    md += [f"| {name} | {r['p50']:.2f} | {r['p90']:.2f} | {r['min']:.2f} |" for name, r in rows.items()]
    stem = f"cpu_preprocess_{''.join(c if c.isalnum() else '-' for c in env['cpu']).strip('-').lower()[:40]}_{args.date}"
    write_json_md(args.out, stem, {"env": env, "ms": rows}, "\n".join(md) + "\n")

if __name__ == "__main__":
    main()
