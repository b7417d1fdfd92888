"""Does the navigator read its instruction? An episode file whose episodes keep their start and goal but
take the instruction of another episode of the same house (a diagnostic for issue 13, not a split).

    python benchmarks/navigator_instruction_swap.py EPISODES OUT.json.gz
    internvla-s2-eval --policy s2 --episodes OUT.json.gz ... --out runs/swap

Each episode gets the instruction of the next episode of its house (cyclic, in file order), so every
instruction is used once and names a path in the same house. Scored against the episode's own goal:
a model that follows its instruction loses SR here; one that ignores it keeps it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict

from internvla_s2_node.sim.episodes import Episode, load_episodes, save_episodes


def swap_within_house(episodes: list[Episode]) -> list[Episode]:
    """Each episode with the instruction of the next episode of its scene (unchanged where a scene has one)."""
    by_scene: dict[str, list[int]] = defaultdict(list)
    for i, ep in enumerate(episodes):
        by_scene[ep.scene_id].append(i)
    out = list(episodes)
    for members in by_scene.values():
        for k, i in enumerate(members):
            donor = episodes[members[(k + 1) % len(members)]]
            out[i] = dataclasses.replace(episodes[i], instruction=donor.instruction)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("episodes")
    p.add_argument("out")
    args = p.parse_args(argv)
    episodes = load_episodes(args.episodes)
    swapped = swap_within_house(episodes)
    changed = sum(a.instruction != b.instruction for a, b in zip(episodes, swapped))
    save_episodes(args.out, swapped)
    print(f"{args.out}: {len(swapped)} episodes, {changed} with another episode's instruction of the same house")
    return 0


if __name__ == "__main__":
    sys.exit(main())
