"""The navigator's diagnostic tools (issue 13): how episodes end, and the STOP-bias probe's head.

The probe runs the shipped model through the real loader; only the LM head's output is shifted, and only
for the STOP token, so every other answer is unchanged.
"""

import json
import pathlib
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import navigator_failures as failures  # noqa: E402
from benchmarks.navigator_stop_probe import BiasedHead, patch_loader, stop_token_id  # noqa: E402

MODEL = REPO / "internvla_s2_node" / "assets" / "navigator"


def _episode(eid, success, near, reason="stop", path=3.0, dist=4.0):
    return {"episode_id": eid, "reason": reason, "steps": 20,
            "metrics": {"success": float(success), "oracle_success": float(near), "path_length": path, "distance_to_goal": dist}}


def test_endings_tell_far_stops_from_late_ones_and_pair_runs(tmp_path):
    recs = [_episode(0, 1, 1, dist=1.0), _episode(1, 0, 0, path=0.0, dist=6.0), _episode(2, 0, 1, dist=4.0),
            _episode(3, 0, 1, reason="max_steps"), _episode(4, 0, 0, dist=5.0)]
    s = failures.summary(recs)
    assert s["endings"] == {"success": 1, "stop_never_near": 2, "stop_after_near": 1, "max_steps_never_near": 0,
                            "max_steps_after_near": 1, "other": 0}
    assert s["stop_before_moving"] == 1 and s["far_stop_distance_m_median"] == 5.0
    assert s["os"] == 0.6 and s["sr"] == 0.2
    other = [_episode(0, 0, 1), _episode(1, 1, 1), _episode(2, 1, 1), _episode(9, 1, 1)]
    pair = failures.paired(recs, other)  # navigator_results.paired
    assert (pair["episodes"], pair["only_this"], pair["only_other"]) == (3, 1, 2)
    for label, rows in (("a", recs), ("b", other)):
        (tmp_path / label / "s2").mkdir(parents=True)
        (tmp_path / label / "s2" / "episodes.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "f.v1"
    assert failures.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--paired-with", "a", "--out", str(out)]) == 0
    saved = json.loads(pathlib.Path(str(out) + ".json").read_text())
    assert {k: saved["b"]["paired"][k] for k in ("episodes", "only_this", "only_other")} == {"episodes": 3, "only_this": 2, "only_other": 1}
    assert "2 only this, 1 only the reference" in pathlib.Path(str(out) + ".md").read_text()


def test_stop_probe_lowers_only_the_stop_logit_of_the_loaded_model(monkeypatch):
    import internvla_s2_node.core.backbone as backbone

    monkeypatch.setattr(backbone, "load_backbone", backbone.load_backbone)  # undone after the test
    patch_loader(2.5)
    loaded = backbone.load_backbone(str(MODEL), device="cpu", dtype="float32")
    head = loaded.model.lm_head
    assert isinstance(head, BiasedHead) and head.weight is head.head.weight
    stop = stop_token_id(loaded.processor.tokenizer)
    hidden = torch.randn(3, head.weight.shape[1])
    diff = head(hidden) - head.head(hidden)
    assert torch.allclose(diff[:, stop], torch.full((3,), -2.5))
    diff[:, stop] = 0
    assert torch.count_nonzero(diff) == 0


def test_instruction_swap_keeps_paths_and_gives_each_episode_another_instruction_of_its_house():
    from benchmarks.navigator_instruction_swap import swap_within_house
    from internvla_s2_node.sim.episodes import load_episodes
    from internvla_s2_node.sim.mujoco_backend import ASSETS_DIR

    episodes = load_episodes(ASSETS_DIR / "episodes" / "mujoco_val_unseen.json.gz")
    swapped = swap_within_house(episodes)
    assert [e.episode_id for e in swapped] == [e.episode_id for e in episodes]
    for a, b in zip(episodes, swapped):
        assert b.instruction != a.instruction and b.scene_id == a.scene_id
        assert (b.start_position == a.start_position).all() and (b.goal_world == a.goal_world).all()
    by_scene = lambda eps: sorted((e.scene_id, e.instruction) for e in eps)  # noqa: E731
    assert by_scene(swapped) == by_scene(episodes)  # each instruction used once, within its house


def test_instruction_swap_score_counts_ends_near_the_given_instructions_goal(tmp_path):
    """A run that ends every episode at its donor's goal scores all of them near the given instruction's goal."""
    from benchmarks.navigator_instruction_swap import donors, score
    from internvla_s2_node.sim.episodes import load_episodes
    from internvla_s2_node.sim.mujoco_backend import ASSETS_DIR

    episodes = load_episodes(ASSETS_DIR / "episodes" / "mujoco_val_unseen.json.gz")[:12]
    for name, target in (("swap", donors(episodes)), ("own", episodes)):
        (tmp_path / name / "s2").mkdir(parents=True)
        lines = [json.dumps({"episode_id": e.episode_id, "trajectory": [list(t.goal_world)]}) for e, t in zip(episodes, target)]
        (tmp_path / name / "s2" / "episodes.rank0.jsonl").write_text("\n".join(lines) + "\n")
    got = score(episodes, str(tmp_path / "swap"), str(tmp_path / "own"))
    assert got["episodes"] == 12 and got["ended_near_given_instructions_goal"] == 12
    assert got["ended_near_own_goal"] == got["goals_within_3m_of_each_other"] < 12
    assert got["baseline_ended_near_own_goal"] == 12


def test_stop_curve_auc_and_bins():
    from benchmarks.navigator_stop_curve import auc, summarize

    assert auc([0.9, 0.8], [0.1, 0.2, 0.3]) == 1.0 and auc([0.1], [0.9]) == 0.0 and auc([0.5], [0.5]) == 0.5
    assert auc([], [0.1]) is None
    points = [{"distance_m": d, "p_stop": p, "stop_top": p > 0.5, "last": last}
              for d, p, last in ((0.4, 0.9, True), (1.5, 0.2, False), (4.0, 0.1, False), (7.0, 0.6, False))]
    s = summarize(points)
    assert [r["frames"] for r in s["bins"]] == [1, 1, 0, 1, 1]
    assert s["bins"][4]["stop_top_share"] == 1.0 and s["auc_within_3m_vs_beyond"] == 0.75
    assert s["auc_last_frame_vs_beyond_3m"] == 1.0


def test_stop_curve_scores_the_oracles_path_with_the_real_model(tmp_path):
    """One held-out episode: its STOP frame is scored, every frame's P(STOP) is a probability."""
    from benchmarks import navigator_stop_curve as curve

    out = tmp_path / "curve"
    assert curve.main(["--model", str(MODEL), "--params-file", str(REPO / "config" / "navigator_s2.yaml"), "--limit", "1",
                       "--every", "8", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["episodes"] == 1 and data["points"][-1]["last"] and sum(p["last"] for p in data["points"]) == 1
    assert all(0.0 <= p["p_stop"] <= 1.0 for p in data["points"])
    assert data["points"][-1]["distance_m"] < 1.0  # the oracle stops within its 0.5 m radius (geodesic on the grid)
