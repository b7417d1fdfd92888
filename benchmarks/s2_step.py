"""S2 step latency: upstream's way (processor + ``model.generate`` on every frame) vs. the fast engine path.

Both run in one process on the same random-weight model, the same frames and the same prompts, step by
step interleaved (so host load hits both alike), over an episode that grows as the node grows it: one
frame appended per step, history = ``linspace`` over the frames before it (8 frames) + the current one.

Models: Qwen3-VL 2B / 8B bodies and the Qwen2.5-VL-7B body (``q25-7B``, the released InternVLA-N1-S2's
architecture: window attention in the vision tower, full attention in blocks 7/15/23/31, patch 14) built
from their published config values (no download, random weights, bf16, sdpa). The tokenizer is the real
Qwen vocabulary (``core.tiny``) and the processors have the released settings, so a 384x384 frame is 144
tokens on Qwen3-VL (9 frames + the S2 prompt ~1.4k tokens) and 196 on Qwen2.5-VL (~1.9k).

    python benchmarks/s2_step.py --sizes 8B,2B,q25-7B --steps 40 --new-tokens 10 --out benchmarks/results
    python benchmarks/s2_step.py --tiny --steps 12            # CPU smoke test with a tiny body
    python benchmarks/s2_step.py --tiny --sizes tiny-q25 --steps 12

``--startup`` measures a (re)start instead (``startup()``): engine creation to the first decision (the
plain path answers while the fast path builds in a thread) and to the first fast decision; run it twice
with one ``--cache-dir`` (``--cache-label cold``, then ``warm``) for a cold and a warm compile cache.

Output: a table on stdout, ``s2_step_<card>_<date>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from timing import pct, time_calls  # noqa: E402  (benchmarks/, the script's folder)

from internvla_s2_node.core import prompt
from internvla_s2_node.core.backbone import BackboneKind, LoadedBackbone
from internvla_s2_node.core.fast_generation import FastGenerator
from internvla_s2_node.core.generation import Generated, model_inputs
from internvla_s2_node.core.history import history_indices

# Published Qwen3-VL-{2B,8B}-Instruct config values (config.json of the released checkpoints).
SIZES = {
    "8B": dict(
        text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
        vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                    deepstack_visual_indexes=[8, 16, 24]),
    ),
    "2B": dict(
        text=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                    deepstack_visual_indexes=[5, 11, 17]),
    ),
    # Qwen2.5-VL-7B-Instruct (the released InternVLA-N1-S2's body): window attention in the vision
    # tower, full attention in blocks 7/15/23/31, patch 14.
    "q25-7B": dict(
        text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, tie_word_embeddings=False),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                    window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
    ),
    # CPU smoke tests only.
    "tiny-q25": dict(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=True),
        vision=dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                    window_size=112, fullatt_block_indexes=[1, 3]),
    ),
    "tiny": dict(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                    deepstack_visual_indexes=[0, 1]),
    ),
}  # fmt: skip
MROPE = {"8B": [24, 20, 20], "2B": [24, 20, 20], "tiny": [4, 2, 2], "q25-7B": [16, 24, 24], "tiny-q25": [2, 3, 3]}
QWEN25 = ("q25-7B", "tiny-q25")


def arch(size: str) -> str:
    return "qwen2_5_vl" if size in QWEN25 else "qwen3_vl"
INSTRUCTION = (
    "Walk out of the bedroom, turn left and go down the hallway past the bathroom, "
    "then enter the kitchen and stop next to the round wooden table"
)


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"ERR {exc}"


def build_qwen25(size: str, device: torch.device, dtype: torch.dtype, attn: str, seed: int = 0):
    """Qwen2.5-VL from the published Qwen2.5-VL-7B-Instruct config values (vocabulary 152064)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    s = SIZES[size]
    text = dict(s["text"])
    tie = text.pop("tie_word_embeddings")
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=152064, rms_norm_eps=1e-6, hidden_act="silu", max_position_embeddings=128000, use_sliding_window=False,
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": MROPE[size]}, **text,
        ),
        vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_chans=3, hidden_act="silu",
                           tokens_per_second=2, **s["vision"]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=tie,
    )  # fmt: skip
    return _instantiate(Qwen2_5_VLForConditionalGeneration, cfg, device, dtype, attn, seed)


def _instantiate(cls, cfg, device, dtype, attn, seed):
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    with torch.device(device):
        try:
            model = cls._from_config(cfg, dtype=dtype, attn_implementation=attn)
        except TypeError:
            model = cls._from_config(cfg, torch_dtype=dtype, attn_implementation=attn)
    model.eval()
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False)
    return model


def build_model(size: str, device: torch.device, dtype: torch.dtype, attn: str, seed: int = 0):
    if size in QWEN25:
        return build_qwen25(size, device, dtype, attn, seed)
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    s = SIZES[size]
    text = dict(s["text"])
    tie = text.pop("tie_word_embeddings")
    cfg = Qwen3VLConfig(
        text_config=dict(
            vocab_size=151936, rms_norm_eps=1e-6, hidden_act="silu", max_position_embeddings=262144,
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": MROPE[size], "mrope_interleaved": True},
            **text,
        ),
        vision_config=dict(patch_size=16, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                           num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh", **s["vision"]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=tie,
    )  # fmt: skip
    return _instantiate(Qwen3VLForConditionalGeneration, cfg, device, dtype, attn, seed)


def load_tokenizer(path: str | None, arch_name: str = "qwen3_vl"):
    if path and arch_name == "qwen2_5_vl" and (pathlib.Path(path).parent / "tokenizer-qwen2_5_vl").is_dir():
        path = str(pathlib.Path(path).parent / "tokenizer-qwen2_5_vl")  # Qwen2.5's added tokens
    if path:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001
            print("AutoTokenizer failed, using PreTrainedTokenizerFast:", repr(exc)[:200])
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast(tokenizer_file=str(pathlib.Path(path) / "tokenizer.json"), eos_token="<|im_end|>", pad_token="<|endoftext|>")
    from internvla_s2_node.core.tiny import make_tokenizer

    return make_tokenizer(arch_name)


def make_frames(n: int, side: int, seed: int = 0) -> list:
    """Smooth random textures (not flat: the image processor and the vision tower see real-looking input)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    frames = []
    yy, xx = np.mgrid[0:side, 0:side] / side
    for _ in range(n):
        k = rng.uniform(2, 12, size=(3, 2))
        ph = rng.uniform(0, 6.28, size=3)
        img = np.stack([np.sin(k[c, 0] * 6.28 * xx + k[c, 1] * 6.28 * yy + ph[c]) for c in range(3)], axis=-1)
        img = (img * 0.5 + 0.5) * 200 + rng.normal(0, 20, size=(side, side, 3))
        frames.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return frames


class PlainTimed:
    """``PlainGenerator``'s code (processor + ``model.generate``), plus a streamer that timestamps tokens."""

    def __init__(self, backbone, max_new_tokens: int) -> None:
        self.backbone, self.max_new_tokens = backbone, max_new_tokens

    def reset(self) -> None:
        pass

    @torch.inference_mode()
    def generate(self, messages, images, keys) -> Generated:
        from transformers.generation.streamers import BaseStreamer

        stamps: list[float] = []

        class Stamp(BaseStreamer):
            def put(self, value):
                stamps.append(time.perf_counter())

            def end(self):
                pass

        processor, model = self.backbone.processor, self.backbone.model
        t0 = time.perf_counter()
        inputs = model_inputs(self.backbone, messages, images)
        t1 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, use_cache=True, streamer=Stamp(),
                             output_scores=True, return_dict_in_generate=True)  # fmt: skip
        t2 = time.perf_counter()
        # Greedy margin (top-1 minus top-2 score) of each new token: how close a call it was.
        self.last_margins = [float(m) for m in (torch.topk(torch.cat(out.scores).float(), 2, dim=-1).values.diff(dim=-1).abs()[:, 0]).tolist()]
        out = out.sequences
        new_ids = out[0, inputs["input_ids"].shape[1] :].tolist()
        decoded = processor.tokenizer.decode(new_ids, skip_special_tokens=True)
        # stamps[0]: the prompt was put (before any compute); stamps[1]: first new token; then one per token.
        first = stamps[1] - t1 if len(stamps) > 1 else float("nan")
        per_tok = (stamps[-1] - stamps[1]) / (len(stamps) - 2) if len(stamps) > 2 else float("nan")
        timing = {"preprocess": t1 - t0, "generate": t2 - t1, "first_token": t1 - t0 + first, "decode_per_token": per_tok,
                  "prompt_tokens": float(inputs["input_ids"].shape[1])}
        return Generated(decoded, new_ids, timing)


def run_episode(gens: dict, frames, steps: int, num_history: int, sync, record: bool, rng_seed: int = 0, stop=None):
    """Steps ``0..steps-1``, every generator on each step in turn; ``stop()`` true before a step ends it early."""
    picker = prompt.ConjunctionPicker(rng_seed, "random")
    rows = []
    for g in gens.values():
        g.reset()
    for t in range(steps):
        if stop is not None and stop():
            print(f"episode stopped after {t} of {steps} steps", flush=True)
            break
        hist = history_indices(t, num_history)
        text = prompt.build_user_text(INSTRUCTION, len(hist), picker.pick())
        images = [frames[i] for i in hist] + [frames[t]]
        keys = hist + [t]
        messages = [prompt.user_message(text, images)]
        row = {"t": t, "images": len(images)}
        for name, g in gens.items():
            if record and torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            out = g.generate(messages, images, keys)
            sync()
            row[name] = {"step": time.perf_counter() - t0, "tokens": out.token_ids, "timing": out.timing}
            if hasattr(g, "last_prefix"):  # prompt positions whose K/V were kept from the last call, prompt length
                row[name]["prefix"] = list(g.last_prefix)
            if hasattr(g, "last_margins"):
                row[name]["margins"] = g.last_margins
            if record and torch.cuda.is_available():
                row[name]["peak_bytes"] = torch.cuda.max_memory_allocated()
        rows.append(row)
    return rows


def summarize(rows, name: str, steady_from: int) -> dict:
    steady = [r for r in rows if r["t"] >= steady_from]
    steps = [r[name]["step"] * 1e3 for r in steady]
    first = [r[name]["timing"].get("first_token", float("nan")) * 1e3 for r in steady]
    pre = [r[name]["timing"].get("preprocess", float("nan")) * 1e3 for r in steady]
    if name == "plain":
        dec = [r[name]["timing"]["decode_per_token"] * 1e3 for r in steady]
    else:
        dec = [r[name]["timing"]["decode"] * 1e3 / max(1, len(r[name]["tokens"]) - 1) for r in steady]
    out = {
        "steps_measured": len(steady),
        "step_ms_p50": pct(steps, 0.5), "step_ms_p90": pct(steps, 0.9), "step_ms_mean": statistics.fmean(steps),
        "first_token_ms_p50": pct(first, 0.5), "decode_ms_per_token_p50": pct(dec, 0.5), "preprocess_ms_p50": pct(pre, 0.5),
        "new_tokens_mean": statistics.fmean(len(r[name]["tokens"]) for r in steady),
        "all_steps_ms_p50": pct([r[name]["step"] * 1e3 for r in rows], 0.5),
    }  # fmt: skip
    if name != "plain":
        out["vision_ms_p50"] = pct([r[name]["timing"]["vision"] * 1e3 for r in steady], 0.5)
        out["prefill_ms_p50"] = pct([r[name]["timing"]["prefill"] * 1e3 for r in steady], 0.5)
    if "peak_bytes" in steady[0][name]:
        out["peak_gpu_GiB"] = max(r[name]["peak_bytes"] for r in rows) / 2**30
    return out


def agreement(rows) -> dict:
    same = sum(r["plain"]["tokens"] == r["fast"]["tokens"] for r in rows)
    first = sum(r["plain"]["tokens"][:1] == r["fast"]["tokens"][:1] for r in rows)
    tok_total = sum(max(len(r["plain"]["tokens"]), len(r["fast"]["tokens"])) for r in rows)
    tok_same = 0
    for r in rows:  # tokens equal up to the first difference (after it the contexts differ)
        for a, b in zip(r["plain"]["tokens"], r["fast"]["tokens"]):
            if a != b:
                break
            tok_same += 1
    # Where the answers part, how close was the plain path's greedy choice (top-1 minus top-2 score)?
    split_margins, all_margins = [], []
    for r in rows:
        margins = r["plain"].get("margins") or []
        all_margins += margins
        for i, (a, b) in enumerate(zip(r["plain"]["tokens"], r["fast"]["tokens"])):
            if a != b:
                if i < len(margins):
                    split_margins.append(margins[i])
                break
    return {"steps": len(rows), "steps_identical": same, "first_token_identical": first,
            "step_agreement": same / len(rows), "token_prefix_agreement": tok_same / max(1, tok_total),
            "margin_at_split_p50": pct(split_margins, 0.5), "margin_at_split_max": max(split_margins, default=float("nan")),
            "margin_all_tokens_p50": pct(all_margins, 0.5), "margin_all_tokens_p10": pct(all_margins, 0.1),
            "mismatches": [{"t": r["t"], "plain": r["plain"]["tokens"], "fast": r["fast"]["tokens"]} for r in rows
                           if r["plain"]["tokens"] != r["fast"]["tokens"]][:10]}  # fmt: skip


def vision_batch_ms(model, processor, frames, device, dtype, sync, reps: int = 5) -> float:
    """Upstream's vision cost per step: the tower on all 9 frames at once (as generate's prefill does)."""
    inp = processor.image_processor(images=frames, return_tensors="pt")
    pv = inp["pixel_values"].to(device=device, dtype=dtype)
    grid = inp["image_grid_thw"].to(device)
    ts = []
    with torch.inference_mode():
        for i in range(reps + 1):
            sync()
            t0 = time.perf_counter()
            model.model.get_image_features(pv, grid)
            sync()
            if i:
                ts.append(time.perf_counter() - t0)
    return pct(ts, 0.5) * 1e3


def gpu_profile(fast, processor, frame, sync) -> dict:
    """GPU time of the fast path's graphs alone (CUDA events), and the top kernels of one decode step and
    one prefill run eagerly under the profiler. Run after the measured episode (state is scratch then)."""
    out: dict = {}

    def events(fn, reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        fn()
        sync()
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        sync()
        return start.elapsed_time(end) / reps

    if fast._decode_graph is not None:
        fast._pos.fill_(fast._capacity // 2)
        out["decode_graph_ms"] = events(fast._decode_graph.replay, 20)
    if fast._prefill_graphs:
        key = max(fast._prefill_graphs)
        out["prefill_graph_ms"] = events(fast._prefill_graphs[key].replay, 5)
        out["prefill_graph_bucket"] = key
    entry = fast._entry({}, None, frame)
    grid = torch.tensor([entry.grid], device=fast.device)
    out["vision_one_frame_ms"] = events(lambda: fast._encode([type(entry)(entry.grid, entry.n_tokens, entry.size, entry.pixels)]), 5)
    # The image processor on one frame (the fast path's per-step CPU work), three ways.
    ip = fast.image_processor
    out["image_processor_ms"] = time_calls(lambda: ip(images=[frame], return_tensors="pt")["pixel_values"].to(fast.device), 40)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out["image_processor_1thread_ms"] = time_calls(lambda: ip(images=[frame], return_tensors="pt")["pixel_values"].to(fast.device), 40)
    torch.set_num_threads(threads)
    try:
        on_gpu = ip(images=[frame], return_tensors="pt", device=str(fast.device))["pixel_values"]
        out["image_processor_on_gpu_ms"] = time_calls(lambda: ip(images=[frame], return_tensors="pt", device=str(fast.device))["pixel_values"].sum().item(), 40)
        ref = ip(images=[frame], return_tensors="pt")["pixel_values"]
        out["image_processor_on_gpu_max_abs_diff"] = float((on_gpu.cpu().float() - ref.float()).abs().max())
    except Exception as exc:  # noqa: BLE001
        out["image_processor_on_gpu_ms"] = repr(exc)[:200]
    from torch.profiler import ProfilerActivity, profile

    for name, fn in (("decode_step", lambda: (fast._decode_fn(fast._capacity), fast._clear_fused())),
                     ("prefill", lambda: fast._prefill_layers(*(max(fast._prefill_graphs) if fast._prefill_graphs else (1472, 3))[:2]))):  # fmt: skip
        try:
            with torch.inference_mode():
                fn()
                sync()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    fn()
                    sync()
            try:
                table = prof.key_averages().table(sort_by="device_time_total", row_limit=12)
            except Exception:  # noqa: BLE001
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)
            print(f"--- {name}: top kernels\n{table}", flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"--- {name}: profile failed: {exc!r}"[:300], flush=True)
    del grid
    return out


def step_diagnostics(fast, frames, num_history: int, sync) -> dict:
    """Where a steady fast step waits: the lines that synchronize with the GPU (torch's sync debug
    mode), and the GPU timeline of one step (busy vs. idle, the longest idle gaps and what the host
    was doing then). Each probe encodes a frame the cache has not seen."""
    import collections
    import warnings

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    t = len(frames) - 1
    hist = history_indices(t, num_history)
    text = prompt.build_user_text(INSTRUCTION, len(hist), "then")
    out: dict = {}
    for probe, key in (("sync", "probe-sync"), ("timeline", "probe-timeline")):
        images = [frames[i] for i in hist] + [frames[0]]
        messages = [prompt.user_message(text, images)]
        keys = hist + [key]
        fast.generate(messages, images, hist + [f"{key}-warm"])  # same shapes, graphs already there
        sync()
        if probe == "sync":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    fast.generate(messages, images, keys)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            sites = collections.Counter(f"{pathlib.Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower())
            out["sync_sites"] = dict(sites.most_common())
            continue
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fast.generate(messages, images, keys)
            sync()
        evs = list(prof.events())
        gpu = sorted((e.time_range.start, e.time_range.end) for e in evs if e.device_type == DeviceType.CUDA)
        cpu = [e for e in evs if e.device_type == DeviceType.CPU]
        if not gpu:
            continue
        busy, gaps, cur_s, cur_e = 0.0, [], gpu[0][0], gpu[0][1]
        for a, b in gpu[1:]:
            if a > cur_e:
                busy += cur_e - cur_s
                gaps.append((a - cur_e, cur_e, a))
                cur_s, cur_e = a, b
            else:
                cur_e = max(cur_e, b)
        busy += cur_e - cur_s
        wall = max(e.time_range.end for e in evs) - min(e.time_range.start for e in evs)
        top = []
        for length, a, b in sorted(gaps, reverse=True)[:12]:
            names = collections.Counter(e.name for e in cpu if a <= e.time_range.start < b)
            top.append({"gap_us": round(length), "at_us": round(a - gpu[0][0]), "host_ops": [n for n, _ in names.most_common(6)]})
        runtime = collections.Counter()
        runtime_us = collections.Counter()
        for e in cpu:
            if e.name.startswith("cuda") and ("Synchronize" in e.name or "Memcpy" in e.name or "EventSynchronize" in e.name):
                runtime[e.name] += 1
                runtime_us[e.name] += e.time_range.end - e.time_range.start
        out["timeline"] = {
            "wall_ms": wall / 1e3, "gpu_busy_ms": busy / 1e3, "gpu_idle_ms": (gpu[-1][1] - gpu[0][0] - busy) / 1e3,
            "kernels": len(gpu), "top_gaps": top,
            "sync_calls": {k: {"n": runtime[k], "ms": round(runtime_us[k] / 1e3, 2)} for k in runtime},
        }  # fmt: skip
    return out


def startup(size: str, args, device, dtype, sync, processor, env) -> dict:
    """What a (re)start costs the robot, through the engine as the node drives it: from the engine's
    creation (the node's configure; building the model is reported apart, as a checkpoint load would
    be) to the first decision, and to the first decision the compiled fast path gives, while the node
    steps continuously (each step starts when the last one ends); then the fast path's steady steps."""
    from internvla_s2_node.core.config import EngineConfig
    from internvla_s2_node.core.engine import S2Engine
    from internvla_s2_node.core.types import Frame

    t_build = time.perf_counter()
    model = build_model(size, device, dtype, args.attn)
    sync()
    build_s = time.perf_counter() - t_build
    kind = BackboneKind.QWEN2_5_VL if arch(size) == "qwen2_5_vl" else BackboneKind.QWEN3_VL
    backbone = LoadedBackbone(kind, model, processor, device, dtype, args.attn, f"random:{size}")
    frames = [np.asarray(f) for f in make_frames(48, args.side, seed=5)]
    cfg = EngineConfig(model_path=f"random:{size}", device=str(device), max_new_tokens=args.new_tokens, num_history=args.num_history,
                       resize_w=args.side, resize_h=args.side, seed=1, fast_path="on", fast_path_build="background",
                       compile_cache_dir=args.cache_dir, prefix_reuse=args.prefix_reuse)  # fmt: skip
    t0 = time.perf_counter()
    engine = S2Engine(cfg, backbone=backbone)
    engine_s = time.perf_counter() - t0
    engine.reset(INSTRUCTION)
    rows, fast_steps, t = [], 0, 0
    # The main thread's stream only: a device-wide synchronize while the build thread captures a CUDA graph
    # fails ("operation not permitted when stream is capturing") and invalidates the capture, which no
    # node step does (its answer's tokens reach the host on its own stream).
    step_sync = torch.cuda.current_stream(device).synchronize if device.type == "cuda" else sync
    while fast_steps < args.steps and time.perf_counter() - t0 < args.startup_limit_s:
        rgb = frames[t % len(frames)]
        index = engine.observe(rgb)
        ts = time.perf_counter()
        decision = engine.step(Frame(rgb), index)
        step_sync()
        te = time.perf_counter()
        captured = getattr(engine.generator, "stats", {}).get("prefill_graphs_captured")  # fast path: graphs so far
        rows.append({"t": t, "at_s": te - t0, "step_ms": (te - ts) * 1e3, "path": decision.path, "raw_text": decision.raw_text,
                     "prefill_graphs": captured})  # fmt: skip
        fast_steps += decision.path == "fast"
        t += 1
    build = engine.fast_build
    fast = engine.generator
    plain_rows = [r for r in rows if r["path"] == "plain"]
    fast_rows = [r for r in rows if r["path"] == "fast"]
    steady = fast_rows[1:]  # the first fast step encodes the whole history (its frame cache starts empty)
    res = {
        "size": size, "params_B": sum(p.numel() for p in model.parameters()) / 1e9, "cache": args.cache_label,
        "prefix_reuse": args.prefix_reuse,
        "model_build_s": build_s, "engine_create_s": engine_s, "engine_prime_s": engine.prime_s,
        "first_decision_s": rows[0]["at_s"] if rows else None, "first_step_ms": rows[0]["step_ms"] if rows else None,
        "fast_build_s": build.seconds if build is not None else None, "fast_build_state": build.state if build is not None else None,
        "fast_build_error": build.error if build is not None else None,
        "first_fast_decision_s": fast_rows[0]["at_s"] if fast_rows else None,
        "first_fast_step_ms": fast_rows[0]["step_ms"] if fast_rows else None,
        "plain_steps_while_building": len(plain_rows),
        "plain_step_ms_p50_while_building": pct([r["step_ms"] for r in plain_rows], 0.5) if plain_rows else None,
        "fast_steps": len(fast_rows),
        "fast_step_ms_p50": pct([r["step_ms"] for r in steady], 0.5) if steady else None,
        "fast_step_ms_p90": pct([r["step_ms"] for r in steady], 0.9) if steady else None,
        "fast_steps_over_150ms": sum(r["step_ms"] > 150 for r in steady),
        # prefill graphs captured during the steady steps (prefix reuse: buckets the warm-up missed)
        "prefill_captures_in_steps": (steady[-1]["prefill_graphs"] or 0) - (fast_rows[0]["prefill_graphs"] or 0) if steady else None,
        "fast_stats": dict(getattr(fast, "stats", {}) or {}), "fast_failures": dict(getattr(fast, "failures", {}) or {}),
        "compile_cache": engine.compile_cache, "steps": rows,
    }  # fmt: skip
    print(f"[{size} {args.cache_label}{' prefix reuse' if args.prefix_reuse else ''}] build {build_s:.1f}s "
          f"| engine {engine_s:.2f}s (prime {'none' if engine.prime_s is None else f'{engine.prime_s:.2f}s'}) | first decision {res['first_decision_s']:.2f}s after engine start "
          f"(step {res['first_step_ms']:.0f} ms) | fast path built in {res['fast_build_s'] or float('nan'):.1f}s, first fast decision at "
          f"{res['first_fast_decision_s'] or float('nan'):.1f}s | {len(plain_rows)} plain steps while building (p50 "
          f"{res['plain_step_ms_p50_while_building'] or float('nan'):.0f} ms) | fast p50 {res['fast_step_ms_p50'] or float('nan'):.1f} ms "
          f"p90 {res['fast_step_ms_p90'] or float('nan'):.1f} ms over {len(steady)} steps ({res['fast_steps_over_150ms']} over 150 ms, "
          f"{res['prefill_captures_in_steps']} prefill captures, {res['fast_stats'].get('warmup_requests')} warm-up requests) "
          f"| failures {res['fast_failures']} "
          f"| build {res['fast_build_state']} {res['fast_build_error'] or ''}", flush=True)  # fmt: skip
    engine.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8B,2B")
    ap.add_argument("--steps", type=int, default=40, help="measured episode length (>= 30 for the report)")
    ap.add_argument("--warmup-steps", type=int, default=10, help="a separate warm-up episode first (graphs, kernels)")
    ap.add_argument("--new-tokens", type=int, default=10)
    ap.add_argument("--num-history", type=int, default=8)
    ap.add_argument("--side", type=int, default=384)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--tokenizer", default=None, help="saved tokenizer dir (default: build it with core.tiny)")
    ap.add_argument("--out", default=None, help="folder for the JSON and markdown results")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny body, float32")
    ap.add_argument("--profile", action="store_true", help="also time the graphs alone and list the top kernels (CUDA)")
    ap.add_argument("--compare-vision-compile", action="store_true", help="also run a fast path with compiled vision blocks (log only)")
    ap.add_argument("--diagnose", action="store_true", help="also list sync points and the GPU timeline of one step (CUDA)")
    ap.add_argument("--prefix-reuse", action="store_true", help="the fast path keeps the K/V of the prompt prefix shared "
                    "with the last call (FastGenerator(prefix_reuse=True)); per-step hits in the JSON")  # fmt: skip
    ap.add_argument("--startup", action="store_true",
                    help="measure a start instead: engine creation to the first decision and to the fast path (run it twice "
                         "with one --cache-dir for a cold and a warm compile cache)")  # fmt: skip
    ap.add_argument("--cache-dir", default="", help="compile cache directory (--startup default: the project's; else torch's default)")
    ap.add_argument("--cache-label", default="", help="a label for the cache's state in --startup results (cold / warm)")
    ap.add_argument("--startup-limit-s", type=float, default=400.0, help="--startup stops stepping after this long")
    args = ap.parse_args()
    if not args.startup and args.steps <= args.num_history:  # the statistics are over steps with the full history
        ap.error(f"--steps {args.steps} leaves no step with the full history of {args.num_history}+1 frames; "
                 f"give --steps {args.num_history + 1} or more")

    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    sizes = ([s for s in args.sizes.split(",") if s.startswith("tiny")] or ["tiny"]) if args.tiny else args.sizes.split(",")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    import transformers

    from internvla_s2_node.core.tiny import make_processor

    env = {
        "date": args.date,
        "card": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "gpu": sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader") if cuda else "",
        "cpu": sh("lscpu | grep 'Model name' | head -1 | sed 's/.*: *//'"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "attn": args.attn,
        "dtype": str(dtype).replace("torch.", ""),
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "new_tokens": args.new_tokens,
        "frame": f"{args.side}x{args.side}",
        "num_history": args.num_history,
    }
    print(json.dumps(env), flush=True)
    processors = {a: make_processor(a, tokenizer=load_tokenizer(args.tokenizer, a)) for a in sorted({arch(s) for s in sizes})}
    if args.startup:
        return run_startup(sizes, args, device, dtype, sync, processors, env)
    if args.cache_dir:  # the fast path's compiles from (and into) this compile cache
        from internvla_s2_node.core import compile_cache

        env["compile_cache"] = compile_cache.configure(compile_cache.cache_root(args.cache_dir))
    frames = make_frames(max(args.steps, args.warmup_steps) + 1, args.side)
    warm_frames = make_frames(args.warmup_steps + 1, args.side, seed=1)
    results = {"env": env, "sizes": {}}
    for size in sizes:
        processor = processors[arch(size)]
        t_build = time.perf_counter()
        model = build_model(size, device, dtype, args.attn)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"[{size}] built {n_params / 1e9:.2f}B params in {time.perf_counter() - t_build:.1f}s", flush=True)
        kind = BackboneKind.QWEN2_5_VL if arch(size) == "qwen2_5_vl" else BackboneKind.QWEN3_VL
        backbone = LoadedBackbone(kind, model, processor, device, dtype, args.attn, f"random:{size}")
        fast = FastGenerator(backbone, args.new_tokens, prefix_reuse=args.prefix_reuse)
        gens = {"plain": PlainTimed(backbone, args.new_tokens), "fast": fast}
        if args.compare_vision_compile:
            gens["fast_cv"] = FastGenerator(backbone, args.new_tokens, compile_vision=True)
        t_w = time.perf_counter()
        run_episode(gens, warm_frames, args.warmup_steps, args.num_history, sync, record=False, rng_seed=1)
        print(f"[{size}] warm-up episode {time.perf_counter() - t_w:.1f}s, stats {dict(fast.stats)}, failures {fast.failures}", flush=True)
        fast.stats.clear()
        rows = run_episode(gens, frames, args.steps, args.num_history, sync, record=cuda)
        steady_from = args.num_history  # from here on every prompt has the full 9 frames
        res = {
            "params_B": n_params / 1e9,
            "prompt_tokens_steady": rows[-1]["plain"]["timing"]["prompt_tokens"],
            "plain": summarize(rows, "plain", steady_from),
            "fast": summarize(rows, "fast", steady_from),
            "agreement": agreement(rows),
            "agreement_steady": agreement([r for r in rows if r["t"] >= steady_from]),
            "fast_stats": dict(fast.stats),
            "fast_failures": fast.failures,
            "plain_vision_9_frames_ms": vision_batch_ms(model, processor, frames[:9], device, dtype, sync),
            "per_step": [{"t": r["t"], "images": r["images"], "plain_ms": r["plain"]["step"] * 1e3, "fast_ms": r["fast"]["step"] * 1e3,
                          "same": r["plain"]["tokens"] == r["fast"]["tokens"], "prefix_reused": r["fast"].get("prefix"),
                          "fast_timing_ms": {k: round(v * 1e3, 2) for k, v in r["fast"]["timing"].items()}} for r in rows],
        }  # fmt: skip
        res["speedup_p50"] = res["plain"]["step_ms_p50"] / res["fast"]["step_ms_p50"]
        if "fast_cv" in gens:
            res["fast_compiled_vision"] = summarize(rows, "fast_cv", steady_from)
            res["fast_compiled_vision"]["failures"] = gens["fast_cv"].failures
            print(f"[{size}] fast + compiled vision blocks: {json.dumps(res['fast_compiled_vision'])}", flush=True)
        if args.profile and cuda:
            with torch.inference_mode():
                res["gpu_only"] = gpu_profile(fast, processor, frames[0], sync)
            print(f"[{size}] GPU time alone: {res['gpu_only']}", flush=True)
        if args.diagnose and cuda:
            res["diagnostics"] = step_diagnostics(fast, frames, args.num_history, sync)
            print(f"[{size}] step diagnostics: {json.dumps(res['diagnostics'], indent=1)}", flush=True)
        results["sizes"][size] = res
        p, f = res["plain"], res["fast"]
        print(f"[{size}] plain p50 {p['step_ms_p50']:.1f} ms p90 {p['step_ms_p90']:.1f} | fast p50 {f['step_ms_p50']:.1f} ms "
              f"p90 {f['step_ms_p90']:.1f} | x{res['speedup_p50']:.2f} | agree {res['agreement']['steps_identical']}/{res['agreement']['steps']}",
              flush=True)  # fmt: skip
        print(f"[{size}] fast: vision {f['vision_ms_p50']:.1f} ms, prefill {f['prefill_ms_p50']:.1f} ms, first token {f['first_token_ms_p50']:.1f} ms, "
              f"decode {f['decode_ms_per_token_p50']:.2f} ms/token, preprocess {f['preprocess_ms_p50']:.1f} ms; stats {dict(fast.stats)}; "
              f"failures {fast.failures}", flush=True)  # fmt: skip
        del gens, fast, backbone, model
        import gc

        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    md = markdown(results)
    print(md)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        card = "".join(c if c.isalnum() else "-" for c in env["card"]).strip("-").lower() or "cpu"
        stem = f"s2_step_{card}_{args.date}"
        (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float))
        (out / f"{stem}.md").write_text(md)
        print("wrote", out / f"{stem}.json")


def run_startup(sizes, args, device, dtype, sync, processors, env) -> None:
    import gc

    for size in sizes:
        res = {"env": env, "startup": startup(size, args, device, dtype, sync, processors[arch(size)], env)}
        if args.out:
            out = pathlib.Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            card = "".join(c if c.isalnum() else "-" for c in env["card"]).strip("-").lower() or "cpu"
            reuse = "_prefix_reuse" if args.prefix_reuse else ""
            path = out / f"startup_{size}_{args.cache_label or 'run'}{reuse}_{card}_{args.date}.json"
            path.write_text(json.dumps(res, indent=1, default=float))
            print("wrote", path, flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def markdown(results) -> str:
    env = results["env"]
    lines = [
        f"S2 step, {env['card']}, {env['date']}: torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, "
        f"{env['dtype']}, {env['attn']}, {env['frame']} frames, history {env['num_history']}+1, {env['new_tokens']} new tokens, "
        f"greedy; episode of {env['steps']} steps (stats over steps with the full 9 frames), after a {env['warmup_steps']}-step warm-up episode.",
        "",
        "| model | path | step p50 ms | step p90 ms | first token ms | decode ms/token | vision ms | preprocess ms | peak GPU GiB | speed-up | same tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for size, r in results["sizes"].items():
        for name in ("plain", "fast"):
            s = r[name]
            vision = r["plain_vision_9_frames_ms"] if name == "plain" else s["vision_ms_p50"]
            agree = r["agreement_steady"]
            speedup = "x%.2f" % r["speedup_p50"]
            same = "%d/%d steps" % (agree["steps_identical"], agree["steps"])
            lines.append(
                f"| {size} ({r['prompt_tokens_steady']:.0f} prompt tokens) | {'upstream (processor + generate)' if name == 'plain' else 'fast engine path'} "
                f"| {s['step_ms_p50']:.1f} | {s['step_ms_p90']:.1f} | {s['first_token_ms_p50']:.1f} | {s['decode_ms_per_token_p50']:.2f} "
                f"| {vision:.1f} | {s['preprocess_ms_p50']:.1f} | {s.get('peak_gpu_GiB', float('nan')):.2f} "
                f"| {speedup if name == 'fast' else ''} | {same if name == 'fast' else ''} |"
            )  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
