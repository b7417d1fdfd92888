"""Does the navigator read its instruction? An episode file whose episodes keep their start and goal but
take the instruction of another episode of the same house (a diagnostic for issue 13, not a split).

    python benchmarks/navigator_instruction_swap.py EPISODES OUT.json.gz
    internvla-s2-eval --policy s2 --episodes OUT.json.gz ... --out runs/swap
    python benchmarks/navigator_instruction_swap.py EPISODES --score runs/swap [--baseline runs/own]

Each episode gets the instruction of the next episode of its house (cyclic, in file order), so every
instruction is used once and names a path in the same house. Scored against the episode's own goal:
a model that follows its instruction loses SR here; one that ignores it keeps it. ``--score`` also counts
the runs that end within 3 m (straight line) of the goal of the instruction they were given, from their
own start, and the episodes whose own and given goals are that close (there, either counts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from collections import defaultdict

import numpy as np

from internvla_s2_node.sim.episodes import Episode, load_episodes, save_episodes


NEAR_M = 3.0


def donors(episodes: list[Episode]) -> list[Episode]:
    """For each episode, the next episode of its scene in file order (itself where a scene has one)."""
    by_scene: dict[str, list[int]] = defaultdict(list)
    for i, ep in enumerate(episodes):
        by_scene[ep.scene_id].append(i)
    out = list(episodes)
    for members in by_scene.values():
        for k, i in enumerate(members):
            out[i] = episodes[members[(k + 1) % len(members)]]
    return out


def swap_within_house(episodes: list[Episode]) -> list[Episode]:
    """Each episode with the instruction of its donor (``donors``)."""
    return [dataclasses.replace(ep, instruction=d.instruction) for ep, d in zip(episodes, donors(episodes))]


def _ends(run_dir: str) -> dict[str, np.ndarray]:
    from internvla_s2_node.sim.results import read_records

    return {str(r["episode_id"]): np.asarray(r["trajectory"][-1], float)[:2] for r in read_records(pathlib.Path(run_dir) / "s2")}


def score(episodes: list[Episode], swapped_run: str, baseline_run: str | None = None) -> dict[str, int]:
    ends = _ends(swapped_run)
    pairs = [(ep, d) for ep, d in zip(episodes, donors(episodes)) if str(ep.episode_id) in ends]
    near = lambda end, ep: bool(np.linalg.norm(end - ep.goal_world[:2]) <= NEAR_M)  # noqa: E731
    out = {"episodes": len(pairs),
           "goals_within_3m_of_each_other": sum(near(d.goal_world[:2], ep) for ep, d in pairs),
           "ended_near_own_goal": sum(near(ends[str(ep.episode_id)], ep) for ep, _ in pairs),
           "ended_near_given_instructions_goal": sum(near(ends[str(ep.episode_id)], d) for ep, d in pairs)}
    if baseline_run:
        own = _ends(baseline_run)
        out["baseline_ended_near_own_goal"] = sum(near(own[str(ep.episode_id)], ep) for ep, _ in pairs if str(ep.episode_id) in own)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("episodes")
    p.add_argument("out", nargs="?", help="write the swapped episode file here")
    p.add_argument("--score", metavar="RUN_DIR", help="count where the swapped run's episodes ended")
    p.add_argument("--baseline", metavar="RUN_DIR", help="with --score: the run with the episodes' own instructions")
    args = p.parse_args(argv)
    episodes = load_episodes(args.episodes)
    if args.score:
        print(json.dumps(score(episodes, args.score, args.baseline)))
        return 0
    if not args.out:
        p.error("give OUT (the swapped episode file to write) or --score RUN_DIR")
    swapped = swap_within_house(episodes)
    changed = sum(a.instruction != b.instruction for a, b in zip(episodes, swapped))
    save_episodes(args.out, swapped)
    print(f"{args.out}: {len(swapped)} episodes, {changed} with another episode's instruction of the same house")
    return 0


if __name__ == "__main__":
    sys.exit(main())
