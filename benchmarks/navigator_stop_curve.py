"""Where does the navigator want to stop? P(STOP) of its first answer token along the oracle's own paths,
by geodesic distance to the goal (a diagnostic for issue 13, minutes on a CPU instead of a closed-loop run).

    python benchmarks/navigator_stop_curve.py --model internvla_s2_node/assets/navigator \\
        --params-file config/navigator_s2.yaml --out benchmarks/results/navigator_stop_curve_run6 [--limit N] [--every K]

Each held-out episode is driven by the oracle (or, ``--driver s2``, by the model itself through
``--s2-mode engine``'s policy); every K-th frame, and the frame where the driver says STOP, is asked about with the history the engine would hold there (upstream's linspace over the frames before
it, level camera, the params files' resize and punctuation, the first conjunction). The model's first
answer token is scored, not generated. Reported per distance bin: frames, mean P(STOP), the share where
STOP is the most likely token; and the AUC of P(STOP) for "within 3 m" (VLN-CE success) against "beyond".
With the oracle driving, the states are the ones the model was trained on; with ``--driver s2`` they are its
own, where the closed-loop false STOPs happen.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.navigator_stop_probe import stop_token_id  # noqa: E402
from internvla_s2_node.core import prompt  # noqa: E402
from internvla_s2_node.core.backbone import load_backbone  # noqa: E402
from internvla_s2_node.core.history import history_indices  # noqa: E402
from internvla_s2_node.core.images import resize_rgb  # noqa: E402
from internvla_s2_node.core.engine import S2Engine  # noqa: E402
from internvla_s2_node.core.generation import model_inputs  # noqa: E402
from internvla_s2_node.evaluation.engine_policy import S2EnginePolicy, engine_config, node_parameters  # noqa: E402
from internvla_s2_node.sim.backend import SUCCESS_DISTANCE_M, SimConfig  # noqa: E402
from internvla_s2_node.sim.episodes import load_episodes  # noqa: E402
from internvla_s2_node.sim.loop import NAVIGATION_ACTIONS, run_episode  # noqa: E402
from internvla_s2_node.sim.mujoco_backend import ASSETS_DIR, MujocoBackend  # noqa: E402
from internvla_s2_node.sim.policies import OraclePolicy  # noqa: E402

BINS_M = (0.0, 1.0, 2.0, 3.0, 5.0, float("inf"))
VAL = ASSETS_DIR / "episodes" / "mujoco_val_unseen.json.gz"


@torch.inference_mode()
def p_stop(backbone, messages, images, stop_id: int) -> tuple[float, bool]:
    """P(first answer token = STOP) and whether it is the most likely token."""
    logits = backbone.model(**model_inputs(backbone, messages, images)).logits[0, -1].float()
    return float(torch.softmax(logits, -1)[stop_id]), int(logits.argmax()) == stop_id


def episode_points(backend, episode, backbone, cfg, stop_id: int, every: int, driver=None) -> list[dict]:
    driver = driver or OraclePolicy()
    result = run_episode(backend, episode, driver, observer=getattr(driver, "observe", None))
    steps = len([a for a in result.actions if a in NAVIGATION_ACTIONS])
    poses = list(zip(result.trajectory[:steps], result.headings[:steps]))
    frames = [resize_rgb(backend.place(p, yaw, 0.0, depth=False).rgb, cfg.resize_w, cfg.resize_h) for p, yaw in poses]
    goal = backend.snap_to_navigable(episode.goal_world)
    points = []
    for t in sorted(set(range(0, steps, every)) | {steps - 1}):
        history = [frames[i] for i in history_indices(t, cfg.num_history)]
        text = prompt.build_user_text(episode.instruction, len(history), prompt.CONJUNCTIONS[0], cfg.prompt_punctuation)
        images = [*history, frames[t]]
        p, top = p_stop(backbone, [prompt.user_message(text, images)], images, stop_id)
        points.append({"episode_id": episode.episode_id, "frame": t, "last": t == steps - 1,
                       "distance_m": round(float(backend.geodesic_distance(poses[t][0], goal)), 3), "p_stop": p, "stop_top": top})
    return points


def auc(positive: list[float], negative: list[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counted half (Mann-Whitney)."""
    if not positive or not negative:
        return None
    neg = np.sort(np.asarray(negative))
    pos = np.asarray(positive)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def summarize(points: list[dict]) -> dict:
    rows = []
    for lo, hi in zip(BINS_M[:-1], BINS_M[1:]):
        sel = [p for p in points if lo <= p["distance_m"] < hi]
        rows.append({"bin_m": [lo, hi], "frames": len(sel),
                     "mean_p_stop": float(np.mean([p["p_stop"] for p in sel])) if sel else None,
                     "stop_top_share": float(np.mean([p["stop_top"] for p in sel])) if sel else None})
    near = [p["p_stop"] for p in points if p["distance_m"] < SUCCESS_DISTANCE_M]
    far = [p["p_stop"] for p in points if p["distance_m"] >= SUCCESS_DISTANCE_M]
    last = [p["p_stop"] for p in points if p["last"]]
    return {"frames": len(points), "bins": rows, "auc_within_3m_vs_beyond": auc(near, far),
            "auc_last_frame_vs_beyond_3m": auc(last, far)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(label: str, s: dict) -> str:
    lines = [f"{label}: {s['frames']} frames; AUC of P(STOP), within 3 m against beyond: {_fmt(s['auc_within_3m_vs_beyond'])}; "
             f"the driver's last frame against beyond 3 m: {_fmt(s['auc_last_frame_vs_beyond_3m'])}", "",
             "| distance to goal (m) | frames | mean P(STOP) | STOP most likely |", "|---|---|---|---|"]
    for r in s["bins"]:
        lo, hi = r["bin_m"]
        span = f"{lo:g}-{hi:g}" if hi != float("inf") else f">= {lo:g}"
        if r["frames"]:
            lines.append(f"| {span} | {r['frames']} | {r['mean_p_stop']:.3f} | {r['stop_top_share']:.3f} |")
        else:
            lines.append(f"| {span} | 0 | - | - |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--params-file", help="s2_node parameters on top of config/sim.yaml (as internvla-s2-eval)")
    p.add_argument("--episodes", default=str(VAL))
    p.add_argument("--scenes-dir")
    p.add_argument("--limit", type=int)
    p.add_argument("--every", type=int, default=3, help="score every K-th frame of each path (and its STOP frame)")
    p.add_argument("--driver", choices=("oracle", "s2"), default="oracle", help="who drives the paths scored")
    p.add_argument("--label", default="s2")
    p.add_argument("--out", required=True, help="path prefix of the .json and .md written")
    args = p.parse_args(argv)
    params = {**node_parameters(args.params_file, args.model), "device": "cpu", "dtype": "float32"}
    cfg = engine_config(params)
    driver = None
    if args.driver == "s2":
        engine = S2Engine(cfg)
        driver, backbone = S2EnginePolicy(engine, float(params["max_waypoint_distance"])), engine.backbone
    else:
        backbone = load_backbone(cfg.model_path, cfg.device, cfg.dtype, cfg.attn_implementation)
    stop_id = stop_token_id(backbone.processor.tokenizer)
    episodes = load_episodes(args.episodes)[: args.limit]
    points: list[dict] = []
    with MujocoBackend(SimConfig.for_agent("r2r"), args.scenes_dir) as backend:
        for episode in episodes:
            points += episode_points(backend, episode, backbone, cfg, stop_id, args.every, driver)
    summary = {"label": args.label, "model": args.model, "driver": args.driver, "episodes": len(episodes), **summarize(points)}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**summary, "points": points}, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(args.label, summary))
    print(markdown(args.label, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
