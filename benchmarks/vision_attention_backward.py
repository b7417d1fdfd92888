"""Forward + backward of the training vision attention: segments cut one slice each (the baseline) against
``core.vision_attention.grouped_sdpa`` (one ``split`` per tensor, one ``cat`` back), in one process.

The layout is a training batch's: ``--samples`` samples of 9 frames (``--frame`` patches each) and, in every
other sample, a look-down frame of ``--look-down`` patches, so the frames of one size are not back to
back. With one slice per segment, each slice's backward writes a zero tensor the size of the whole
packed sequence (issue 13's H200 profile: 0.6 s of device time per batch-64 step). Outputs and input
gradients of both are compared bitwise.

    python benchmarks/vision_attention_backward.py --device cpu --out benchmarks/results/vision_attention_backward_cpu_2026-12-02.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from internvla_s2_node.core.vision_attention import grouped_sdpa, length_groups  # noqa: E402


def sliced_reference(query, key, value, cu_seq_lens_q):
    """The baseline: each segment gathered and put back by its own slice (the code before the split)."""
    bounds = [int(b) for b in cu_seq_lens_q.tolist()]
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    pieces = [None] * len(lengths)
    for length, members in length_groups(lengths).items():
        q, k, v = (torch.cat([t[0, :, bounds[i] : bounds[i] + length] for i in members], dim=1) for t in (query, key, value))
        q, k, v = (t.unflatten(1, (len(members), length)).transpose(0, 1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).flatten(1, 2)
        for row, i in enumerate(members):
            pieces[i] = out[:, row * length : (row + 1) * length]
    return torch.cat(pieces, dim=1).transpose(0, 1).unsqueeze(0)


def layout(samples: int, frame: int, look_down: int) -> list[int]:
    lengths = []
    for s in range(samples):
        lengths += [frame] * 9 + ([look_down] if s % 2 == 0 else [])
    return lengths


def run(fn, qkv, cu, device) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    q, k, v = (t.detach().clone().requires_grad_(True) for t in qkv)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn(q, k, v, cu)
    out.float().square().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out.detach(), [q.grad, k.grad, v.grad]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--frame", type=int, default=100, help="patches of a 160x160 frame (patch 16)")
    ap.add_argument("--look-down", type=int, default=120, help="patches of the 192x160 look-down frame")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    lengths = layout(args.samples, args.frame, args.look_down)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    torch.manual_seed(0)
    qkv = [torch.randn(1, args.heads, sum(lengths), args.head_dim, device=device) for _ in range(3)]
    paths = {"sliced (baseline)": lambda q, k, v, c: sliced_reference(q, k, v, c),
             "split (grouped_sdpa)": lambda q, k, v, c: grouped_sdpa(None, q, k, v, cu_seq_lens_q=c)[0]}
    times = {name: [] for name in paths}
    results = {}
    for rep in range(args.repeats + 1):  # interleaved; the first round warms up
        for name, fn in paths.items():
            seconds, out, grads = run(fn, qkv, cu, device)
            if rep:
                times[name].append(seconds)
            results[name] = (out, grads)
    (base_out, base_grads), (out, grads) = results.values()
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "segments": len(lengths), "patches": sum(lengths), "heads": args.heads, "head_dim": args.head_dim,
        "forward_backward_ms_p50": {name: round(1000 * statistics.median(t), 1) for name, t in times.items()},
        "same_output": bool(torch.equal(base_out, out)),
        "same_gradients": all(torch.equal(a, b) for a, b in zip(base_grads, grads)),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
