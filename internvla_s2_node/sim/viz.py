"""Plots: a top-down map per episode and a bar chart comparing policies (matplotlib, Agg)."""

from __future__ import annotations

import math
import pathlib
import textwrap
from typing import Mapping, Sequence

import numpy as np

from .episodes import Episode
from .loop import EpisodeResult
from .navgrid import NavGrid

RATE_METRICS = ("success", "spl", "oracle_success", "ndtw")
DISTANCE_METRICS = ("distance_to_goal", "path_length")
METRIC_LABELS = {"success": "SR", "spl": "SPL", "oracle_success": "OS", "ndtw": "nDTW", "sdtw": "sDTW",
                 "distance_to_goal": "NE (m)", "path_length": "path length (m)", "steps": "steps"}
FIGURE_DPI = 110
MAP_FIGSIZE = (7.0, 6.0)
FREE_SHADE, BLOCKED_SHADE, OBSTACLE_SHADE = 1.0, 0.75, 0.35
HEADING_ARROW_M = 0.5
HEADING_COLOR = "tab:purple"  # not the agent path's blue
TITLE_WIDTH, TITLE_LINES = 80, 3


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _grid_image(grid: NavGrid) -> np.ndarray:
    """Free floor white, inflated margin light grey, obstacles dark."""
    img = np.full(grid.shape, BLOCKED_SHADE)
    img[grid.navigable] = FREE_SHADE
    if grid.obstacles is not None and grid.obstacles.shape == grid.shape:
        img[grid.obstacles] = OBSTACLE_SHADE
    return img


def plot_episode(
    path: str | pathlib.Path,
    result: EpisodeResult,
    grid: NavGrid | None = None,
    episode: Episode | None = None,
    title: str | None = None,
    success_distance: float = 3.0,
) -> pathlib.Path:
    """Top-down map: grid, reference path, agent path, waypoints, start (and its heading) and goal
    with the success radius; the title gives the metrics and the wrapped instruction. Returns the PNG path."""
    plt = _pyplot()
    fig = episode_figure(result, grid, episode, title, success_distance)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def episode_title(result: EpisodeResult, episode: Episode | None = None) -> str:
    m = result.metrics
    head = (f"episode {result.episode_id}: SR {m.success:.0f}  SPL {m.spl:.2f}  NE {m.distance_to_goal:.2f} m  "
            f"nDTW {m.ndtw:.2f} ({result.reason.value})")
    if episode is None or not episode.instruction.strip():
        return head
    return head + "\n" + textwrap.fill(" ".join(episode.instruction.split()), TITLE_WIDTH, max_lines=TITLE_LINES)


def episode_figure(result: EpisodeResult, grid: NavGrid | None = None, episode: Episode | None = None,
                   title: str | None = None, success_distance: float = 3.0):
    """The map figure (caller closes it)."""
    plt = _pyplot()
    from matplotlib.colors import to_rgba

    fig, ax = plt.subplots(figsize=MAP_FIGSIZE)
    if grid is not None:
        ax.imshow(_grid_image(grid), origin="lower", extent=grid.extent, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
    traj = np.asarray(result.trajectory)
    if episode is not None:
        ref = episode.reference_path_world
        if len(ref):
            ax.plot(ref[:, 0], ref[:, 1], "--o", color="tab:green", ms=3, lw=1.5, label="reference path")
        goal = episode.goal_world
        ax.add_patch(plt.Circle(goal[:2], success_distance, fc=to_rgba("tab:green", 0.08), ec="tab:green", lw=1,
                                ls=":", label=f"success radius ({success_distance:g} m)"))
        ax.plot(goal[0], goal[1], "*", color="tab:green", ms=16, mec="k", label="goal")
    ax.plot(traj[:, 0], traj[:, 1], "-", color="tab:blue", lw=2, label="agent path")
    ax.plot(traj[0, 0], traj[0, 1], "o", color="tab:blue", ms=9, mec="k", label="start")
    if result.headings:
        yaw = result.headings[0]
        ax.arrow(traj[0, 0], traj[0, 1], HEADING_ARROW_M * math.cos(yaw), HEADING_ARROW_M * math.sin(yaw),
                 width=0.04, color=HEADING_COLOR, label="start heading")
    ax.plot(traj[-1, 0], traj[-1, 1], "s", color="tab:red", ms=8, mec="k", label="end")
    if result.waypoints:
        wp = np.array(result.waypoints)
        ax.plot(wp[:, 0], wp[:, 1], "x", color="tab:orange", ms=8, mew=2, label="waypoints")
    ax.set_title(title or episode_title(result, episode), fontsize=9)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    if grid is not None:
        x0, x1, y0, y1 = grid.extent
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    return fig


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    return path


def plot_summaries(
    path: str | pathlib.Path,
    summaries: Mapping[str, Mapping[str, float]],
    rate_metrics: Sequence[str] = RATE_METRICS,
    distance_metrics: Sequence[str] = DISTANCE_METRICS,
    title: str = "",
    notes: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Grouped bars per policy: rates (0-1) on the left, distances (m) on the right.

    ``notes``: policy -> a few words shown with its legend entry and under the plot, e.g.
    ``{"s2": "tiny:qwen3_vl, random weights"}``.
    """
    plt = _pyplot()
    fig = summaries_figure(summaries, rate_metrics, distance_metrics, title, notes)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def summaries_figure(summaries, rate_metrics=RATE_METRICS, distance_metrics=DISTANCE_METRICS, title="", notes=None):
    """The bar-chart figure (caller closes it)."""
    plt = _pyplot()
    notes = dict(notes or {})
    names = list(summaries)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [len(rate_metrics), len(distance_metrics)]})
    for ax, keys, ylabel in ((axes[0], rate_metrics, "rate"), (axes[1], distance_metrics, "metres")):
        width = 0.8 / max(1, len(names))
        x = np.arange(len(keys))
        for i, name in enumerate(names):
            values = [float(summaries[name].get(k, math.nan)) for k in keys]
            label = f"{name} ({notes[name]})" if name in notes else name
            bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, np.nan_to_num(values), width, label=label)
            for bar, v in zip(bars, values):
                ax.annotate("n/a" if math.isnan(v) else f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [METRIC_LABELS.get(k, k) for k in keys])
        ax.set_ylabel(ylabel)
    axes[0].set_ylim(0, 1.1)
    axes[0].legend(fontsize=8)
    episodes = {int(s.get("episodes", 0)) for s in summaries.values()}
    fig.suptitle(title or f"policies over {'/'.join(map(str, sorted(episodes)))} episodes", fontsize=10)
    if notes:
        fig.text(0.5, -0.02, "; ".join(f"{name}: {note}" for name, note in notes.items()), ha="center", fontsize=8)
    return fig
