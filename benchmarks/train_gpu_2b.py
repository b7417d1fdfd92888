"""Issue 7 on one GPU: fine-tune a random-weight Qwen3-VL-2B (published config values) for a few hundred
steps on samples recorded from the simulator's oracle, single process, and log loss and throughput.

    python benchmarks/train_gpu_2b.py --processor-from DIR --data REC@88,0,30 --steps 200 --out OUTDIR

``--processor-from``: a folder with a Qwen3-VL tokenizer/processor/chat template (e.g. the tiny
checkpoint's, tokenizer.json may be gzipped); the 2B weights are random (no download here).
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def build_checkpoint(processor_from: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    import torch
    from s2_step import build_model

    model = build_model("2B", torch.device("cuda"), torch.bfloat16, "sdpa")
    model.save_pretrained(dst, safe_serialization=True)
    for f in processor_from.iterdir():
        if f.name.endswith(".gz"):
            (dst / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
        elif f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, dst / f.name)
    del model
    torch.cuda.empty_cache()
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processor-from", type=pathlib.Path, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/issue7"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = build_checkpoint(args.processor_from, args.work / "qwen3vl-2b-random")
    built = time.perf_counter() - t0
    run_dir = args.work / "run"
    cmd = [sys.executable, "-m", "internvla_s2_node.train.cli", "--model", str(ckpt), "--data", args.data,
           "--output-dir", str(run_dir), "--device", "cuda", "--bf16", "--gradient-checkpointing", "--no-progress",
           "--max-steps", str(args.steps), "--per-device-batch-size", str(args.batch), "--num-workers", "2",
           "--learning-rate", "1e-5", "--vision-lr", "2e-6", "--logging-steps", "1", "--save-steps", "0"]
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t1
    (args.out / "train_gpu_2b_stderr.log").write_text(proc.stderr[-20000:])
    log = run_dir / "train_log.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    import torch
    import transformers

    summary = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
               "transformers": transformers.__version__, "model": "Qwen3-VL-2B body, random weights, bf16",
               "returncode": proc.returncode, "checkpoint_build_s": round(built, 1), "train_wall_s": round(wall, 1),
               "steps": len(rows), "global_batch": args.batch,
               "first_losses": [r["loss"] for r in rows[:5]], "last_losses": [r["loss"] for r in rows[-5:]]}
    if rows:
        summary["samples_per_s"] = round(rows[-1]["samples"] / max(rows[-1]["elapsed_s"], 1e-9), 3)
    (args.out / "train_gpu_2b.json").write_text(json.dumps({"summary": summary, "log": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
