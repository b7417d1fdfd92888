"""A tiny Qwen3-VL overfits a few recorded samples; its checkpoint loads in the S2 engine."""

import json
import time

import numpy as np
import pytest

from internvla_s2_node.core.backbone import BackboneKind, detect_backbone, load_backbone
from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.cli import main as train_main
from internvla_s2_node.train.config import TrainConfig
from internvla_s2_node.train.dataset import prepare_data
from internvla_s2_node.train.evaluate import check_answers
from internvla_s2_node.train.synthetic import write_synthetic_scene

FRAME, LOOK_DOWN = (64, 64), (96, 72)


def _args(data, out, *extra):
    return [
        "--data", str(data), "--output-dir", str(out), "--model", str(default_tiny_checkpoint("qwen3_vl")),
        "--resize-w", "64", "--resize-h", "64", "--min-pixels", "1024", "--max-pixels", str(96 * 72),
        "--no-bf16", "--no-gradient-checkpointing", "--no-progress", "--num-workers", "0", "--stop-repeat", "1",
        "--device", "cpu", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    data = write_synthetic_scene(root / "scene", num_episodes=3, length=12, frame_size=FRAME, look_down_size=LOOK_DOWN)
    out = root / "run"
    start = time.perf_counter()
    args = _args(data, out, "--max-steps", "70", "--per-device-batch-size", "9", "--learning-rate", "5e-3", "--no-tune-vision", "--warmup-ratio", "0.05")
    assert train_main(args) == 0
    return data, out, time.perf_counter() - start


def test_loss_falls_and_answers_are_reproduced(trained):
    data, out, seconds = trained
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 70 and log[-1]["step"] == 70
    assert log[-1]["loss"] < 0.1 * log[0]["loss"]
    assert log[-1]["lr"] < log[len(log) // 2]["lr"]  # cosine decay
    report = json.loads((out / "data_report.json").read_text())
    assert report["samples"] == 9 and set(report["samples_by_kind"]) == {"pixel_goal", "turns", "stop"}

    backbone = load_backbone(str(out), device="cpu")
    cfg = TrainConfig(**json.loads((out / "train_config.json").read_text()))
    dataset, _ = prepare_data(cfg, backbone.processor)
    checks = check_answers(backbone.model, backbone.processor, dataset)
    correct = sum(c.ok for c in checks)
    assert len(checks) >= 9
    assert correct >= 0.9 * len(checks), [c for c in checks if not c.ok]
    print(f"overfit: {correct}/{len(checks)} answers exact after 70 steps ({seconds:.1f}s)")


def test_checkpoint_layout_and_detection(trained):
    _, out, _ = trained
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "chat_template.jinja", "tokenizer.json", "processor_config.json"} <= names
    assert detect_backbone(out) == BackboneKind.QWEN3_VL
    processor_config = json.loads((out / "processor_config.json").read_text())
    size = processor_config["image_processor"]["size"]
    assert size["longest_edge"] == 96 * 72 and size["shortest_edge"] == 1024  # the trained image budget is what inference uses


def test_trained_checkpoint_runs_in_the_engine(trained):
    """The node's engine loads the checkpoint and decides; the look-down frame comes as the next frame."""
    from PIL import Image

    from internvla_s2_node.core.config import EngineConfig
    from internvla_s2_node.core.engine import S2Engine
    from internvla_s2_node.core.types import DecisionKind, Frame

    data, out, _ = trained
    folder = data / "videos" / "chunk-000"

    def load(camera, i):
        return np.asarray(Image.open(folder / f"observation.images.rgb.125cm_{camera}deg" / f"episode_000000_{i}.png"))

    cfg = EngineConfig(model_path=str(out), device="cpu", resize_w=64, resize_h=64, look_down_mode="command", fast_path="off")
    engine = S2Engine(cfg)
    try:
        engine.reset("walk past the red chair and stop at the door")
        decisions = []
        for i in range(12):
            index = engine.observe(load(0, i))
            if i not in (0, 8, 11):
                continue
            decision = engine.step(Frame(rgb=load(0, i)), index=index)
            if decision.kind == DecisionKind.LOOK_DOWN:
                decision = engine.step(Frame(rgb=load(30, i)))
            decisions.append(decision)
        kinds = [d.kind for d in decisions]
        print("engine decisions:", [(d.kind.value, d.raw_text) for d in decisions])
        assert all(d.raw_text for d in decisions)
        assert DecisionKind.NONE not in kinds, [(d.raw_text, d.reason) for d in decisions]
        assert kinds[-1] == DecisionKind.STOP
        assert decisions[0].looked_down and decisions[0].kind == DecisionKind.PIXEL_GOAL  # no depth given: pixel only
    finally:
        engine.close()


def test_time_limit_stops_after_the_step_and_saves(tmp_path):
    data = write_synthetic_scene(tmp_path / "scene", num_episodes=1, length=12, frame_size=FRAME, look_down_size=LOOK_DOWN)
    out = tmp_path / "run"
    assert train_main(_args(data, out, "--max-steps", "50", "--per-device-batch-size", "2", "--time-limit-s", "1e-6")) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]
    assert json.loads((out / "trainer_state.json").read_text()) == {"step": 1, "total_steps": 50}
    assert detect_backbone(str(out)) == BackboneKind.QWEN3_VL
    load_backbone(str(out), device="cpu")


def test_time_limit_must_be_positive(tmp_path, capsys):
    assert train_main(_args(tmp_path, tmp_path / "o", "--time-limit-s", "0")) != 0
    assert "time_limit_s must be > 0" in capsys.readouterr().err
