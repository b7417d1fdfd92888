"""Recorded oracle episodes train with the trainer's defaults; all-skipped data says why (issue 16 item 3)."""

import json
import re

import pytest

from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.evaluation.runner import EvalConfig, evaluate
from internvla_s2_node.train.cli import main as train_main

SMALL = ["--resize-w", "64", "--resize-h", "64", "--no-progress", "--num-workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    evaluate(EvalConfig(out=root / "eval", policies=("oracle",), limit=1, width=128, height=96, maps=False,
                        progress=False, record=str(root / "data")))
    return root / "data"


def test_recording_trains_with_default_camera_setting(recorded, tmp_path):
    (scene,) = recorded.iterdir()
    assert (scene / "videos" / "chunk-000" / "observation.images.rgb.125cm_30deg").is_dir()
    out = tmp_path / "run"
    # Only the model, size and step count are set: camera setting, sampling and prompts are the defaults.
    args = ["--data", str(recorded), "--output-dir", str(out), "--model", str(default_tiny_checkpoint("qwen3_vl")),
            "--max-steps", "2", *SMALL]
    assert train_main(args) == 0
    report = json.loads((out / "data_report.json").read_text())
    assert report["episodes"] == 1 and report["samples"] > 0 and not report["skipped"]
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2


def test_all_episodes_skipped_says_why_and_writes_the_report(recorded, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", f"{recorded}@88,0,30", "--output-dir", str(out), "--model", str(default_tiny_checkpoint("qwen3_vl")),
            "--max-steps", "1", *SMALL]
    assert train_main(args) == 1  # a DataError is a runtime error: one line, exit 1 (cli/errors.py)
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("internvla-s2-train:")]
    assert re.search(r"1 skipped as malformed; first reasons: .*missing columns .*goal\.88cm_30deg", line), line
    report = json.loads((out / "data_report.json").read_text())
    assert report["samples"] == 0 and len(report["skipped"]) == 1 and "88cm_30deg" in report["skipped"][0]
