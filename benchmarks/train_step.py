"""Where a training step's time goes: the loader alone, the step alone, and both, in one process.

Issue 13's GPU runs trained at 75-150 samples/s (batch 64-128) while one CPU loader process encodes
about 234 samples/s; this splits the rate so the next run fixes the right part:

  * ``loader``  batches from the real DataLoader (its workers, pinning) and nothing else;
  * ``step``    training steps on batches already on the device (forward, backward, optimizer);
  * ``train``   both, as internvla-s2-train runs them;
  * ``copy``    host-to-device copy of one batch (pinned by the loader).

Results go straight to ``--out`` (json and md; no pipe can hold them back), with a torch profiler
table of the step. Random weights are fine here: only time is measured.

    python benchmarks/train_step.py --data runs/nav3/data --model runs/nav3/init --batch 64 --workers 15 --out $OUT
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from internvla_s2_node.train.cli import build_parser, config_from_args  # noqa: E402
from internvla_s2_node.train.trainer import Trainer  # noqa: E402


def trainer(args) -> Trainer:
    argv = ["--data", args.data, "--model", args.model, "--output-dir", str(args.out / "unused_run"),
            "--resize-w", "160", "--resize-h", "160", "--max-pixels", "35840", "--frame-cache", args.frame_cache,
            "--sample-step", "2", "--stop-repeat", "1", "--per-device-batch-size", str(args.batch),
            "--max-steps", str(10 * args.batches), "--num-workers", str(args.workers),
            "--no-gradient-checkpointing", "--no-progress", "--device", args.device]  # fmt: skip
    return Trainer(config_from_args(build_parser().parse_args(argv)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(samples: int, seconds: float) -> float:
    return round(samples / seconds, 1)


def measure(args) -> dict:
    t = trainer(args)
    device, batch = t.info.device, args.batch
    batches = iter(t.loader())
    warm = [next(batches) for _ in range(args.warmup)]  # workers started, frame cache filled for these
    start = time.perf_counter()
    held = [next(batches) for _ in range(args.batches)]
    loader_s = time.perf_counter() - start
    on_device = [{k: v.to(device) for k, v in b.items()} for b in held]
    sync(device)
    start = time.perf_counter()
    for b in held:
        {k: v.to(device, non_blocking=True) for k, v in b.items()}
    sync(device)
    copy_s = (time.perf_counter() - start) / len(held)
    for b in warm[:2]:
        t.train_step([b])
    sync(device)
    start = time.perf_counter()
    for b in on_device:
        t.train_step([b])
    sync(device)
    step_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.batches):
        t.train_step([next(batches)])
    sync(device)
    train_s = time.perf_counter() - start
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for b in on_device[:3]:
            t.train_step([b])
        sync(device)
    pixel_bytes = sum(b["pixel_values"].numel() * b["pixel_values"].element_size() for b in held) / len(held)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "python": platform.python_version(),
        "batch": batch, "workers": args.workers, "batches": args.batches,
        "pixel_dtype": str(held[0]["pixel_values"].dtype), "pixel_mb_per_batch": round(pixel_bytes / 1e6, 1),
        "tokens_per_batch": int(held[0]["input_ids"].numel()),
        "samples_per_s": {"loader": rate(batch * len(held), loader_s), "step": rate(batch * len(held), step_s),
                          "train": rate(batch * args.batches, train_s)},
        "copy_ms_per_batch": round(1000 * copy_s, 2),
        "profile_by_self_cpu": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20),
        "profile_by_device": prof.key_averages().table(sort_by="self_device_time_total", row_limit=15) if device.type == "cuda" else "",
    }  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True, help="checkpoint to train (random weights are fine)")
    ap.add_argument("--frame-cache", default="/tmp/s2_train_step_frames")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = measure(args)
    stem = args.out / f"train_step_b{args.batch}_w{args.workers}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if not k.startswith("profile")}
    md = [f"# train_step: {result['device']}, {result['date']}", "", "```", json.dumps(summary, indent=2), "```", "",
          "```", result["profile_by_self_cpu"], result["profile_by_device"], "```", ""]  # fmt: skip
    stem.with_suffix(".md").write_text("\n".join(md))
    print(json.dumps(summary, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
