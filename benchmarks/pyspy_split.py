"""Where a node process's Python time goes outside the model: a ``py-spy record -f raw`` profile summed by
function, with every sample under a generator's ``generate`` (the S2 model step) counted apart.

    py-spy record -p <node pid> -d 30 -r 250 --threads --nonblocking -f raw -o node.raw
    python benchmarks/pyspy_split.py node.raw --top 40

Prints total samples, samples inside ``generate``, then the functions outside it by inclusive and by own
(leaf) samples. Samples / rate = seconds of one thread; divide by the frames of the window for per-frame cost.
"""

from __future__ import annotations

import argparse
import collections

IN_MODEL = ("FastGenerator.generate", "PlainGenerator.generate")


def name(frame: str) -> str:
    """``func (path/file.py:line)`` -> ``func [file.py:line]``."""
    func, _, where = frame.partition(" (")
    return f"{func} [{where.rstrip(')').split('/')[-1]}]" if where else func


def split(lines) -> tuple[int, int, collections.Counter, collections.Counter]:
    total = in_model = 0
    inclusive, own = collections.Counter(), collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n, frames = int(count), stack.split(";")[1:]  # the first item is the thread
        total += n
        if any(f.startswith(IN_MODEL) for f in frames):
            in_model += n
            continue
        own[name(frames[-1]) if frames else "?"] += n
        for key in {name(f) for f in frames}:
            inclusive[key] += n
    return total, in_model, inclusive, own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with open(args.raw) as fh:
        total, in_model, inclusive, own = split(fh)
    print(f"samples {total}, inside generate {in_model}, outside {total - in_model}")
    print("--- outside generate, inclusive")
    for key, n in inclusive.most_common(args.top):
        print(n, key)
    print("--- outside generate, own")
    for key, n in own.most_common(args.top // 2):
        print(n, key)


if __name__ == "__main__":
    main()
