"""Per-decision accuracy of an S2 model on recorded oracle episodes (teacher-forced, greedy, CPU).

Closed-loop SR mixes two things: how often one decision is right, and how errors compound along an
episode. This script measures the first alone. Every training sample of the recordings (the samples
`internvla-s2-train` builds, so the prompt is the engine's) is answered greedily from the oracle's own
history. The report gives:

* the kind the model answered (STOP, look-down, turn arrows) against the kind the oracle's sample
  expects, as a confusion matrix;
* for turn samples, how often the arrows match exactly and how often the first arrow does;
* for look-down samples, the pixel error of the second answer, given the oracle's first.

    python benchmarks/navigator_decisions.py --model internvla_s2_node/assets/navigator \\
        --data held_out=runs/diag/rec_val --data train=runs/diag/rec_train --out runs/diag/decisions.json
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import pathlib
import re
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = ("STOP", "look_down", "turns", "other")
PIXEL = re.compile(r"^\s*(\d+)\s+(\d+)\s*$")


def kind_of(answer: str) -> str:
    text = answer.strip()
    if text == "STOP":
        return "STOP"
    if text.startswith("↓"):
        return "look_down"
    if text and set(text) <= set("←→↑"):
        return "turns"
    return "other"


def pixel_error(expected: str, got: str) -> float | None:
    a, b = PIXEL.match(expected), PIXEL.match(got)
    if not a or not b:
        return None
    return math.dist((int(a[1]), int(a[2])), (int(b[1]), int(b[2])))


def evaluate(model, processor, data: str, args) -> dict:
    from internvla_s2_node.train.config import TrainConfig
    from internvla_s2_node.train.dataset import prepare_data
    from internvla_s2_node.train.evaluate import check_answers

    cfg = TrainConfig(
        data=[data], output_dir=tempfile.mkdtemp(), model=args.model, resize_w=args.resize, resize_h=args.resize,
        sample_step=args.sample_step, stop_repeat=1, pixel_goal_repeat=1, max_pixels=None, min_pixels=None,
    )  # fmt: skip
    dataset, report = prepare_data(cfg, processor)
    indices = range(0, len(dataset), max(1, len(dataset) // args.max_samples)) if args.max_samples else range(len(dataset))
    start = time.time()
    turns_of = collections.defaultdict(dict)  # sample -> turn -> AnswerCheck; turn 1 is the look-down turn after the oracle's "↓"
    for check in check_answers(model, processor, dataset, indices):
        turns_of[check.sample][check.turn] = check
    confusion = collections.Counter()
    turns_exact = turns_first = turns_n = 0
    pixel_errors = []
    for turns in turns_of.values():
        expected, got = turns[0].expected, turns[0].got.strip()
        confusion[(kind_of(expected), kind_of(got))] += 1
        if kind_of(expected) == "turns" and kind_of(got) == "turns":
            turns_n += 1
            turns_exact += got == expected
            turns_first += got[:1] == expected[:1]
        if 1 in turns:
            pixel_errors.append(pixel_error(turns[1].expected, turns[1].got))
    n = sum(confusion.values())
    parsed = sorted(e for e in pixel_errors if e is not None)
    by_expected = {k: sum(v for (e, _), v in confusion.items() if e == k) for k in KINDS}
    return {
        "data": data, "samples": n, "seconds": round(time.time() - start, 1), "samples_by_kind": report["samples_by_kind"],
        "confusion": {e: {g: confusion[(e, g)] for g in KINDS} for e in KINDS if by_expected[e]},
        "kind_accuracy": round(sum(confusion[(k, k)] for k in KINDS) / max(n, 1), 3),
        "recall": {k: round(confusion[(k, k)] / by_expected[k], 3) for k in KINDS if by_expected[k]},
        "turns_both": turns_n, "turns_exact": round(turns_exact / max(turns_n, 1), 3), "turns_first_arrow": round(turns_first / max(turns_n, 1), 3),
        "pixel_answers": len(pixel_errors), "pixel_parsed": len(parsed),
        "pixel_error_p50": parsed[len(parsed) // 2] if parsed else None, "pixel_error_p90": parsed[int(len(parsed) * 0.9)] if parsed else None,
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", action="append", required=True, help="NAME=DIR of LeRobot recordings (repeatable)")
    p.add_argument("--resize", type=int, default=160, help="history/current frame side the model was trained with")
    p.add_argument("--sample-step", type=int, default=2)
    p.add_argument("--max-samples", type=int, help="an evenly spaced subset of this many samples per data folder")
    p.add_argument("--out", type=pathlib.Path)
    args = p.parse_args(argv)
    import torch
    import transformers

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = transformers.AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32, local_files_only=True).eval()
    processor = transformers.AutoProcessor.from_pretrained(args.model, local_files_only=True)
    results = {"model": args.model, "torch": torch.__version__, "transformers": transformers.__version__, "runs": {}}
    for spec in args.data:
        name, _, folder = spec.partition("=")
        results["runs"][name] = evaluate(model, processor, folder, args)
        print(name, json.dumps(results["runs"][name]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
