"""Training input pipeline, old against new, side by side in one process (issue 13's loader).

One process encodes the same samples (a fixed shuffled order over recorded episodes) with:
  * ``old``        the previous path: each frame decoded and resized per sample, the HF image processor;
  * ``new cold``   ``--frame-cache`` empty (the first epoch: each episode's front frames decoded and resized
                   once, into one .npy per episode);
  * ``new warm``   the cache filled (every later epoch);
  * ``uint8 warm``  the cache filled and the pixel values as uint8 patches (train/pixels.py; the trainer
                   normalises them on the device), with the bytes per sample each path hands the trainer.
The rows run interleaved for ``--rounds`` rounds; the medians are compared.
Every sample's tensors from ``new`` are compared with ``old`` (``torch.equal``); ``uint8`` samples have
the same token tensors and, normalised, the same pixel values (to 2e-6). torch runs one thread,
as in a DataLoader worker (torch sets that in each worker); ``old, default threads`` shows what the
main process (``--num-workers 0``) costs with torch's default thread count on this machine.

    internvla-s2-eval --policy oracle --record /tmp/rec --no-maps --out /tmp/rec_eval   # 8 bundled episodes
    python benchmarks/train_loader.py --data /tmp/rec --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import statistics
import sys
import tempfile
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from internvla_s2_node.train.cli import build_parser, config_from_args  # noqa: E402
from internvla_s2_node.train.dataset import prepare_data  # noqa: E402
from internvla_s2_node.train.model import configure_processor  # noqa: E402

NAVIGATOR = REPO / "internvla_s2_node" / "assets" / "navigator"


def dataset(args, processor, uint8=False, **overrides):
    argv = ["--data", args.data, "--model", str(NAVIGATOR), "--output-dir", "/tmp/unused",
            "--resize-w", "160", "--resize-h", "160", "--max-pixels", "35840",
            "--sample-step", str(args.sample_step), "--stop-repeat", str(args.stop_repeat)]  # fmt: skip
    cfg = config_from_args(build_parser().parse_args(argv))
    for key, value in overrides.items():
        setattr(cfg, key, value)
    configure_processor(processor, cfg)
    ds, report = prepare_data(cfg, processor)
    if not uint8:
        ds.patching = None  # the processor's float32 values, as before train/pixels.py
    return ds, report


def timed(ds, order) -> float:
    start = time.perf_counter()
    for i in order:
        ds.encode(i)
    return len(order) / (time.perf_counter() - start)


def same(a: dict, b: dict, patching=None) -> bool:
    if a.keys() != b.keys():
        return False
    if patching is not None and "pixel_values" in b:
        b = {**b, "pixel_values": patching.normalize(b["pixel_values"])}
        if not torch.allclose(a["pixel_values"], b["pixel_values"], rtol=0, atol=2e-6):
            return False
        return all(torch.equal(a[k], b[k]) for k in a if k != "pixel_values")
    return all(torch.equal(a[k], b[k]) for k in a)


def bytes_per_sample(ds, order) -> float:
    return statistics.mean(sum(t.numel() * t.element_size() for t in ds.encode(i).values()) for i in order)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="recorded episodes (internvla-s2-eval --record)")
    ap.add_argument("--samples", type=int, default=300, help="samples per row (cycled over the data)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--default-threads-samples", type=int, default=30)
    ap.add_argument("--sample-step", type=int, default=4)
    ap.add_argument("--stop-repeat", type=int, default=5)
    ap.add_argument("--out", type=pathlib.Path)
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(NAVIGATOR)
    old, report = dataset(args, processor)
    order = [i % len(old) for i in range(args.samples)]
    random.Random(0).shuffle(order)
    episodes_in_order = len({old.specs[i].episode for i in order})
    default_threads = torch.get_num_threads()
    rows: dict[str, list[float]] = {}
    rows[f"old, default threads ({default_threads})"] = [timed(old, order[: args.default_threads_samples])]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        new, _ = dataset(args, processor, frame_cache=cache)
        rows["new cold"] = [timed(new, order)]
        cache_bytes = sum(f.stat().st_size for f in pathlib.Path(cache).iterdir())
        new, _ = dataset(args, processor, frame_cache=cache)  # a fresh process's view: opens the files written above
        fast, _ = dataset(args, processor, uint8=True, frame_cache=cache)
        runs = {"old": old, "new warm": new, "uint8 warm": fast}
        for _ in range(args.rounds):  # interleaved, so load changes on this shared machine hit all rows alike
            for name, ds in runs.items():
                rows.setdefault(name, []).append(timed(ds, order))
        with tempfile.TemporaryDirectory() as fresh_cache:  # untimed: every sample, cold and warm, against old
            fresh, _ = dataset(args, processor, frame_cache=fresh_cache)
            equal = sum(same(old.encode(i), fresh.encode(i)) and same(old.encode(i), new.encode(i)) for i in order)
            equal_uint8 = sum(same(old.encode(i), fast.encode(i), fast.patching) for i in order)
            sample_bytes = {"float32 (old, new)": bytes_per_sample(new, order[:50]), "uint8": bytes_per_sample(fast, order[:50])}
    median = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu(), "cores": os.cpu_count(), "load_avg_1min_at_end": os.getloadavg()[0],
        "python": platform.python_version(), "torch": torch.__version__, "transformers": _version("transformers"),
        "data": args.data, "episodes": report["episodes"], "samples_in_data": report["samples"],
        "samples_by_kind": report["samples_by_kind"], "samples_per_row": len(order), "episodes_touched": episodes_in_order,
        "default_threads_samples": args.default_threads_samples,
        "rounds": args.rounds, "samples_per_s_median": {k: round(v, 1) for k, v in median.items()},
        "samples_per_s_rounds": {k: [round(x, 1) for x in v] for k, v in rows.items()},
        "speedup_vs_old": {k: round(v / median["old"], 2) for k, v in median.items() if k != "old"},
        "samples_equal": f"{equal}/{len(order)}", "uint8_samples_equal_after_normalising": f"{equal_uint8}/{len(order)}",
        "bytes_per_sample_mean_of_50": {k: round(v) for k, v in sample_bytes.items()},
        "cache_bytes_per_episode": cache_bytes // max(1, report["episodes"]),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if equal != len(order) or equal_uint8 != len(order):
        raise SystemExit("train_loader: new samples differ from old ones")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"train_loader_{args.tag}_{datetime.date.today().isoformat()}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {stem}.json")


def _cpu() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


if __name__ == "__main__":
    main()
