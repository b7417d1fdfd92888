"""Fast-path variants side by side (issue 14 item 4): today's fast path, grouped vision attention, prefix reuse.

One body per process. The variants (each its own ``FastGenerator`` on the same model, frames and prompts)
run interleaved step by step over an episode that grows as the node grows it (one frame per step,
history = ``linspace`` over the frames before it, 8 + the current one), after a warm-up episode of the
same length and the same conjunction draws (so that prefix reuse meets every prefill shape once before
the measured steps; its frames differ). Upstream's way is not run (``s2_step.py`` compares with it).

Variants (``--variants``):

* ``base``: the fast path with per-segment vision attention (the fast path before grouping);
* ``grouped``: vision attention grouped by segment length (``vision_grouped=True``, the default now);
* ``grouped_prefix``: grouped + prefix reuse (``prefix_reuse=True``);
* ``prefix``: per-segment vision attention + prefix reuse;
* ``grouped_tuned``: grouped, the decode step compiled with max_autotune + coordinate_descent_tuning;
* ``grouped_gemv``, ``grouped_prefix_gemv``: grouped (+ prefix reuse), the decode's one-token projections and
  the output head by the Triton GEMV (``decode_gemv="triton"``);
* ``prefix_gemv_blocks``, ``prefix_gemv_tower``, ``prefix_gemv_tower_cv``: grouped + prefix reuse + GEMV, the
  vision tower's blocks one CUDA graph each, or the whole tower from one graph per frame shape
  (``vision_tower_graph``), with its blocks compiled inside it (``compile_vision``);
* ``prefix_gemv_tower_attn``: ``prefix_gemv_tower`` with the decode attention by the Triton kernels.

Per step: each variant's step time and timings, its tokens and whether they equal ``base``'s, and for
prefix reuse the kept positions / prompt tokens. Stats over the steps with the full 9 frames.

    python benchmarks/step_variants.py --size q25-7B --steps 32 --tokenizer .cache/s2bench/tokenizer --out /tmp/r
    python benchmarks/step_variants.py --tiny --size tiny-q25 --steps 12 --out /tmp/r   # CPU smoke test
    python benchmarks/step_variants.py --combine /tmp/r/step_*.json --out /tmp   # one JSON + markdown for all sizes
"""

from __future__ import annotations

import time

_T0 = time.monotonic()  # --deadline-s counts from here (imports included)

import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import s2_step  # noqa: E402  (benchmarks/, the script's folder)
from timing import pct  # noqa: E402

VARIANTS = {
    "base": dict(vision_grouped=False, prefix_reuse=False),
    "grouped": dict(vision_grouped=True, prefix_reuse=False),
    "grouped_prefix": dict(vision_grouped=True, prefix_reuse=True),
    "prefix": dict(vision_grouped=False, prefix_reuse=True),
    # the decode step compiled with Inductor's GEMM autotuning (Triton templates against cuBLAS) and
    # coordinate-descent tuning of its other kernels (issue 14: decode closer to the bandwidth floor)
    "grouped_tuned": dict(vision_grouped=True, prefix_reuse=False, decode_compile_options={"max_autotune": True, "coordinate_descent_tuning": True}),
    # the decode step's one-token projections and the output head by the Triton GEMV (core/fast_generation/gemv.py)
    "grouped_gemv": dict(vision_grouped=True, prefix_reuse=False, decode_gemv="triton"),
    "grouped_prefix_gemv": dict(vision_grouped=True, prefix_reuse=True, decode_gemv="triton"),
    # the vision tower: its blocks one CUDA graph each between eager grid work, or the whole tower from one
    # graph per frame shape (its grid constants recorded), optionally with the blocks compiled inside it
    "prefix_gemv_blocks": dict(vision_grouped=True, prefix_reuse=True, decode_gemv="triton", vision_tower_graph=False),
    "prefix_gemv_tower": dict(vision_grouped=True, prefix_reuse=True, decode_gemv="triton", vision_tower_graph=True),
    "prefix_gemv_tower_cv": dict(vision_grouped=True, prefix_reuse=True, decode_gemv="triton", vision_tower_graph=True, compile_vision=True),
    # the decode attention by the Triton kernels (core/fast_generation/decode_attention.py), with the tower graph
    "prefix_gemv_tower_attn": dict(vision_grouped=True, prefix_reuse=True, decode_gemv="triton", vision_tower_graph=True,
                                   decode_attention="s2_decode_triton"),
}


def card_name(env: dict) -> str:
    return "".join(c if c.isalnum() else "-" for c in env["card"]).strip("-").lower() or "cpu"


def environment(args, cuda: bool, dtype) -> dict:
    import transformers

    return {
        "date": args.date, "card": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "gpu": s2_step.sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader") if cuda else "",
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__, "attn": args.attn, "dtype": str(dtype).replace("torch.", ""),
        "steps": args.steps, "warmup_steps": args.warmup_steps, "new_tokens": args.new_tokens, "frame": f"{args.side}x{args.side}",
        "num_history": args.num_history, "git": s2_step.sh("git rev-parse --short HEAD 2>/dev/null"),
    }  # fmt: skip


def per_step(rows, names) -> list[dict]:
    out = []
    for r in rows:
        row = {"t": r["t"], "images": r["images"]}
        for name in names:
            g = r[name]
            reused, length = g.get("prefix") or (0, 0)
            row[name] = {
                "ms": round(g["step"] * 1e3, 2), "tokens": g["tokens"], "same_as_base": g["tokens"] == r[names[0]]["tokens"],
                "prefix_reused": reused, "prompt_tokens": length, "hit": round(reused / length, 4) if length else None,
                "timing_ms": {k: round(v * 1e3, 2) for k, v in g["timing"].items()},
            }  # fmt: skip
        out.append(row)
    return out


def variant_summary(rows, name: str, base: str, steady_from: int) -> dict:
    s = s2_step.summarize(rows, name, steady_from)
    steady = [r for r in rows if r["t"] >= steady_from]
    hits = [r[name]["prefix"][0] / r[name]["prefix"][1] for r in steady if r[name].get("prefix") and r[name]["prefix"][1]]
    s.update(
        prefix_hit_mean=sum(hits) / len(hits) if hits else 0.0, prefix_hit_p50=pct(hits, 0.5) if hits else 0.0,
        prefix_hit_steps=sum(h > 0 for h in hits),
        prefix_hit_mean_all_steps=(lambda h: sum(h) / len(h) if h else 0.0)(
            [r[name]["prefix"][0] / r[name]["prefix"][1] for r in rows if r[name].get("prefix") and r[name]["prefix"][1]]),
        same_tokens_as_base_steady=sum(r[name]["tokens"] == r[base]["tokens"] for r in steady),
        same_tokens_as_base_all=sum(r[name]["tokens"] == r[base]["tokens"] for r in rows),
        same_first_token_as_base_steady=sum(r[name]["tokens"][:1] == r[base]["tokens"][:1] for r in steady),
        prompt_tokens_steady=steady[-1][name].get("prefix", (0, 0))[1] if steady else None,
    )  # fmt: skip
    return s


def run_size(args, device, dtype, sync, cuda: bool, env: dict) -> dict:
    from internvla_s2_node.core.backbone import BackboneKind, LoadedBackbone
    from internvla_s2_node.core.fast_generation import FastGenerator
    from internvla_s2_node.core.tiny import make_processor

    t_start = time.perf_counter()
    left = lambda: args.deadline_s - (time.monotonic() - _T0)  # noqa: E731
    size = args.size
    processor = make_processor(s2_step.arch(size), tokenizer=s2_step.load_tokenizer(args.tokenizer, s2_step.arch(size)))
    t0 = time.perf_counter()
    model = s2_step.build_model(size, device, dtype, args.attn)
    sync()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{size}] built {n_params / 1e9:.2f}B params in {build_s:.1f}s", flush=True)
    kind = BackboneKind.QWEN2_5_VL if s2_step.arch(size) == "qwen2_5_vl" else BackboneKind.QWEN3_VL
    backbone = LoadedBackbone(kind, model, processor, device, dtype, args.attn, f"random:{size}")
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"step_variants: unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    gens = {name: FastGenerator(backbone, args.new_tokens, **VARIANTS[name]) for name in names}
    frames = s2_step.make_frames(args.steps + 1, args.side)
    warm_frames = s2_step.make_frames(args.warmup_steps + 1, args.side, seed=1)
    t0 = time.perf_counter()
    warm_steps = s2_step.run_episode(gens, warm_frames, args.warmup_steps, args.num_history, sync, False, stop=lambda: left() < 0.45 * args.deadline_s)
    warm_s = time.perf_counter() - t0
    print(f"[{size}] warm-up episode {len(warm_steps)} steps in {warm_s:.1f}s; "
          + "; ".join(f"{n}: {dict(g.stats)} failures {g.failures}" for n, g in gens.items()), flush=True)  # fmt: skip
    warm_stats = {n: dict(g.stats) for n, g in gens.items()}
    for g in gens.values():
        g.stats.clear()
    rows = s2_step.run_episode(gens, frames, args.steps, args.num_history, sync, cuda, stop=lambda: left() < 8)
    steady_from = args.num_history
    res = {
        "size": size, "params_B": n_params / 1e9, "model_build_s": build_s, "warmup_s": warm_s, "warmup_steps_done": len(warm_steps),
        "steps_done": len(rows), "steady_from": steady_from, "variants": {n: VARIANTS[n] for n in names},
        "vision_grouped": {n: g.vision_grouped for n, g in gens.items()},
        "summary": {n: variant_summary(rows, n, names[0], steady_from) for n in names} if len(rows) > steady_from else {},
        "warmup_stats": warm_stats, "measured_stats": {n: dict(g.stats) for n, g in gens.items()},
        "failures": {n: g.failures for n, g in gens.items()}, "per_step": per_step(rows, names), "total_s": time.perf_counter() - t_start,
    }  # fmt: skip
    for n, s in res["summary"].items():
        print(f"[{size}] {n}: p50 {s['step_ms_p50']:.1f} p90 {s['step_ms_p90']:.1f} ms | first token {s['first_token_ms_p50']:.1f} | "
              f"decode {s['decode_ms_per_token_p50']:.2f} ms/token | vision {s['vision_ms_p50']:.2f} ms/frame | prefill {s['prefill_ms_p50']:.1f} | "
              f"prefix hit {s['prefix_hit_mean']:.3f} | same tokens as {names[0]} {s['same_tokens_as_base_steady']}/{s['steps_measured']} | "
              f"captured while measuring {res['measured_stats'][n].get('prefill_graphs_captured', 0)} prefill graphs", flush=True)  # fmt: skip
    del gens, backbone, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return res


def markdown(results: dict) -> str:
    env = results["env"]
    lines = [
        f"Fast-path variants, {env['card']}, {env['date']}: torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, "
        f"{env['dtype']}, {env['attn']}, {env['frame']} frames, history {env['num_history']}+1, {env['new_tokens']} new tokens, greedy; "
        f"code {env.get('git', '?')}. Per body one process, the variants interleaved step by step over an episode of {env['steps']} steps "
        f"(stats over the steps with all 9 frames) after a warm-up episode of {env['warmup_steps']} steps.",
        "",
        "| body | variant | step p50 / p90 ms | first token ms | decode ms/token | vision ms/frame | prefill ms | prefix hit (mean) | same tokens as base | prefill graphs captured while measuring |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for size, r in results["sizes"].items():
        for n, s in r["summary"].items():
            lines.append(
                f"| {size} ({s['prompt_tokens_steady'] or 0:.0f} prompt tokens) | {n} | {s['step_ms_p50']:.1f} / {s['step_ms_p90']:.1f} "
                f"| {s['first_token_ms_p50']:.1f} | {s['decode_ms_per_token_p50']:.2f} | {s['vision_ms_p50']:.2f} | {s['prefill_ms_p50']:.1f} "
                f"| {s['prefix_hit_mean']:.3f} | {s['same_tokens_as_base_steady']}/{s['steps_measured']} "
                f"| {r['measured_stats'][n].get('prefill_graphs_captured', 0)} |"
            )  # fmt: skip
        if not r["summary"]:
            lines.append(f"| {size} | (only {r['steps_done']} steps measured) | | | | | | | | |")
    lines += ["", "Prefix hit per step (kept positions / prompt tokens), prefix-reuse variants:", ""]
    for size, r in results["sizes"].items():
        for n in r["variants"]:
            if r["variants"][n]["prefix_reuse"]:
                hits = " ".join(f"{row['t']}:{row[n]['prefix_reused']}/{row[n]['prompt_tokens']}" for row in r["per_step"])
                lines.append(f"* {size} {n}: {hits}")
    return "\n".join(lines) + "\n"


def combine(paths: list[str], out: pathlib.Path, tag: str = "") -> pathlib.Path:
    results: dict = {"env": None, "sizes": {}}
    for p in paths:
        if not pathlib.Path(p).is_file():
            print(f"step_variants: no result file {p}", flush=True)
            continue
        one = json.loads(pathlib.Path(p).read_text())
        results["env"] = results["env"] or one["env"]
        results["sizes"][one["result"]["size"]] = one["result"]
    if results["env"] is None:
        raise SystemExit("step_variants: no result files to combine; run the bodies first")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"step_variants{'_' + tag if tag else ''}_{card_name(results['env'])}_{results['env']['date']}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float))
    md = markdown(results)
    (out / f"{stem}.md").write_text(md)
    print(md)
    return out / f"{stem}.json"


def bpe_from_tokenizer(src: pathlib.Path, dst: pathlib.Path) -> None:
    """``core.tiny``'s cached BPE (vocabulary without the added tokens, merges) from the benchmark's saved
    tokenizer, so the CUDA tests need neither the network nor the tiktoken ranks on the device."""
    from internvla_s2_node.core.tiny import FIRST_SPECIAL_ID

    if src.is_dir():  # a checkpoint's tokenizer (the navigator ships the real vocabulary): its tokenizer.json
        import tempfile

        import transformers

        saved = pathlib.Path(tempfile.mkdtemp())
        transformers.AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(saved)
        src = saved / "tokenizer.json"
    data = json.loads(src.read_text())
    data["model"]["vocab"] = {tok: i for tok, i in data["model"]["vocab"].items() if i < FIRST_SPECIAL_ID}
    data["added_tokens"] = []
    if len(data["model"]["vocab"]) != FIRST_SPECIAL_ID:
        raise SystemExit(f"step_variants: {src} has {len(data['model']['vocab'])} base tokens, expected {FIRST_SPECIAL_ID}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data, ensure_ascii=False))
    print("wrote", dst, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="q25-7B", help=f"one of {', '.join(s2_step.SIZES)}")
    ap.add_argument("--variants", default="base,grouped,grouped_prefix", help=f"comma list from {', '.join(VARIANTS)}; the first is the base")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--warmup-steps", type=int, default=None, help="default: --steps (prefix reuse meets every prefill shape)")
    ap.add_argument("--new-tokens", type=int, default=10)
    ap.add_argument("--num-history", type=int, default=8)
    ap.add_argument("--side", type=int, default=384)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--cache-dir", default="", help="compile cache directory (torch's default if empty)")
    ap.add_argument("--deadline-s", type=float, default=300.0, help="this process ends its episodes early to finish within this")
    ap.add_argument("--out", default=None)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny body, float32")
    ap.add_argument("--combine", nargs="*", default=None, help="result files of this script to put into one JSON + markdown under --out")
    ap.add_argument("--tag", default="", help="--combine: a word in the output file names")
    ap.add_argument("--bpe-from", default=None, help="write core.tiny's BPE cache file (--out) from a saved tokenizer.json or a checkpoint folder "
                    "(internvla_s2_node/assets/navigator has the real vocabulary)")
    args = ap.parse_args()
    if args.bpe_from:
        bpe_from_tokenizer(pathlib.Path(args.bpe_from), pathlib.Path(args.out))
        return
    if args.combine is not None:
        combine(args.combine, pathlib.Path(args.out or "."), args.tag)
        return
    if args.size not in s2_step.SIZES:
        raise SystemExit(f"step_variants: unknown size {args.size!r}; choose from {', '.join(s2_step.SIZES)}")
    if args.tiny and not args.size.startswith("tiny"):
        raise SystemExit(f"step_variants: --tiny needs a tiny size (tiny, tiny-q25), got {args.size!r}")
    args.warmup_steps = args.steps if args.warmup_steps is None else args.warmup_steps
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    env = environment(args, cuda, dtype)
    print(json.dumps(env), flush=True)
    if args.cache_dir:
        from internvla_s2_node.core import compile_cache

        env["compile_cache"] = compile_cache.configure(compile_cache.cache_root(args.cache_dir))
    res = run_size(args, device, dtype, sync, cuda, env)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"step_{args.size}_{card_name(env)}_{args.date}.json"
        path.write_text(json.dumps({"env": env, "result": res}, indent=1, default=float))
        print("wrote", path, flush=True)


if __name__ == "__main__":
    main()
