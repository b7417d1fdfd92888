"""The decode step's weight GEMVs (one token, bf16) of each body: cuBLAS (torch's ``F.linear``, what the fast
path runs) against a Triton GEMV, per shape. Issue 14 item 4, "decode closer to the bandwidth floor": the 8B
decode step's GEMVs ran at 68-90% of the H200's bandwidth (``results/decode_profile_nvidia-h200_2026-12-03.log``);
this measured the kernel the fast path now uses (``core/fast_generation/gemv.py``), autotuned per shape.

Each kernel is timed in a CUDA graph of back-to-back calls over distinct weight copies (more bytes than the
L2 cache holds, as the 36 layers of a real step), so launch gaps and cache hits are what they are in the
decode graph. Reported: microseconds per call, TB/s of weights read, and the largest difference from an fp32
reference (the fast path's tokens must stay the plain path's in fp32; in bf16 both kernels round).

    python benchmarks/decode_gemv.py --sizes 8B,2B,q25-7B --out benchmarks/results
    TRITON_INTERPRET=1 python benchmarks/decode_gemv.py --smoke   (CPU: the Triton kernel's values only)
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import subprocess
import sys

import torch
import triton

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from timing import write_json_md  # noqa: E402  (benchmarks/, the script's folder)

from internvla_s2_node.core.fast_generation import gemv  # noqa: E402

VOCAB = {"8B": 151936, "2B": 151936, "q25-7B": 152064}
L2_BYTES = 60 * 2**20  # H100 / H200: 50 MiB of L2; weights cycled through exceed it


def decode_shapes(size: str) -> dict[str, tuple[int, int]]:
    """(out, in) of the decode step's projections, fused as the fast path fuses them (q/k/v, gate/up)."""
    from s2_step import SIZES  # benchmarks/: the published config values

    t = SIZES[size]["text"]
    h, heads, kv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d = t.get("head_dim", h // heads)
    return {
        "qkv": ((heads + 2 * kv) * d, h),
        "o": (h, heads * d),
        "gate_up": (2 * t["intermediate_size"], h),
        "down": (h, t["intermediate_size"]),
        "lm_head": (VOCAB[size], h),
    }


def _configs():
    return [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
            for bn in (2, 4, 8, 16) for bk in (256, 512, 1024) for w in (4, 8) for s in (1, 2)]  # fmt: skip


_tuned = triton.autotune(configs=_configs(), key=["N", "K"])(gemv._gemv_kernel)  # the fast path's kernel, tuned here


def triton_gemv(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, config: dict | None = None) -> torch.Tensor:
    """``x`` [K], ``w`` [N, K] row-major, into ``y`` [N]; autotuned per shape unless ``config`` is given."""
    n, k = w.shape
    if config is not None:
        meta = dict(config)
        warps, stages = meta.pop("num_warps", 4), meta.pop("num_stages", 1)
        gemv._gemv_kernel[(triton.cdiv(n, meta["BLOCK_N"]),)](x, w, w, y, n, k, HAS_BIAS=False, **meta, num_warps=warps, num_stages=stages)
    else:
        _tuned[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)](x, w, w, y, n, k, HAS_BIAS=False)
    return y


def graph_time_us(fn, calls: int, replays: int = 20) -> float:
    """Microseconds per call of ``fn(i)`` for ``i`` in range(calls), captured back to back in one CUDA graph."""
    for i in range(calls):
        fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / (replays * calls)


def measure(name: str, n: int, k: int, gen: torch.Generator) -> dict:
    dev = torch.device("cuda")
    nbytes = n * k * 2
    copies = max(4, -(-4 * L2_BYTES // nbytes))
    ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16, generator=gen) * k**-0.5 for _ in range(copies)]
    x = torch.randn(k, device=dev, dtype=torch.bfloat16, generator=gen)
    y = torch.empty(n, device=dev, dtype=torch.bfloat16)
    ref = (ws[0].float() @ x.float())
    triton_gemv(x, ws[0], y)  # autotunes on this shape
    config = dict(_tuned.best_config.all_kwargs())
    config = {k2: v for k2, v in config.items() if k2 in ("BLOCK_N", "BLOCK_K", "num_warps", "num_stages")}
    diff_triton = (y.float() - ref).abs().max().item()
    cublas = torch.nn.functional.linear(x.view(1, k), ws[0]).view(n)
    diff_cublas = (cublas.float() - ref).abs().max().item()
    yc = torch.empty(1, n, device=dev, dtype=torch.bfloat16)
    t_cublas = graph_time_us(lambda i: torch.mm(x.view(1, k), ws[i].t(), out=yc), copies)
    t_triton = graph_time_us(lambda i: triton_gemv(x, ws[i], y, config), copies)
    del ws
    torch.cuda.empty_cache()
    row = {"shape": name, "out": n, "in": k, "weight_MB": round(nbytes / 1e6, 1), "copies": copies,
           "cublas_us": round(t_cublas, 2), "cublas_TBps": round(nbytes / t_cublas / 1e6, 2),
           "triton_us": round(t_triton, 2), "triton_TBps": round(nbytes / t_triton / 1e6, 2), "triton_config": config,
           "max_abs_diff_fp32_ref": {"cublas": diff_cublas, "triton": diff_triton}}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def smoke() -> None:
    """CPU, under ``TRITON_INTERPRET=1``: the kernel's values against fp32 on odd shapes (masks, blocks)."""
    gen = torch.Generator().manual_seed(0)
    for n, k in ((5, 33), (64, 256), (130, 700)):
        w, x = torch.randn(n, k, generator=gen), torch.randn(k, generator=gen)
        y = torch.empty(n)
        triton_gemv(x, w, y, {"BLOCK_N": 4, "BLOCK_K": 128, "num_warps": 4, "num_stages": 1})
        err = (y - w @ x).abs().max().item()
        print(f"smoke {n}x{k}: max abs diff {err:.2e}")
        assert err < 1e-4, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8B,2B,q25-7B")
    ap.add_argument("--smoke", action="store_true", help="CPU check of the kernel's values (TRITON_INTERPRET=1)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args()
    if args.smoke:
        return smoke()
    gpu = subprocess.run("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader", shell=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    env = {"date": args.date, "gpu": gpu, "card": torch.cuda.get_device_name(), "python": platform.python_version(),
           "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda}  # fmt: skip
    print(json.dumps(env), flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = {size: [measure(name, n, k, gen) for name, (n, k) in decode_shapes(size).items()] for size in args.sizes.split(",")}
    md = [f"Decode GEMVs (1 token, bf16), {env['card']}, {env['date']}: torch {env['torch']}, Triton {env['triton']}, "
          "CUDA " + str(env["cuda"]) + ". Per call in a CUDA graph over weight copies larger than L2.", "",
          "| body | projection | out x in | MB | cuBLAS us | cuBLAS TB/s | Triton us | Triton TB/s | Triton config |",
          "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for size, rs in rows.items():
        for r in rs:
            md.append(f"| {size} | {r['shape']} | {r['out']} x {r['in']} | {r['weight_MB']} | {r['cublas_us']} | {r['cublas_TBps']} | "
                      f"{r['triton_us']} | {r['triton_TBps']} | {r['triton_config']} |")  # fmt: skip
        layer = [r for r in rs if r["shape"] != "lm_head"]
        md.append(f"| {size} | one layer's GEMVs | | {sum(r['weight_MB'] for r in layer):.1f} | {sum(r['cublas_us'] for r in layer):.1f} | | "
                  f"{sum(min(r['cublas_us'], r['triton_us']) for r in layer):.1f} (the faster of the two per shape) | | |")  # fmt: skip
    stem = f"decode_gemv_{env['card'].lower().replace(' ', '-')}_{args.date}"
    write_json_md(args.out, stem, {"env": env, "rows": rows}, "\n".join(md) + "\n")

if __name__ == "__main__":
    main()
