import json

import numpy as np
from fixtures_models import tiny_checkpoint  # noqa: F401
from PIL import Image

from internvla_s2_node.cli import infer


def test_infer_prints_one_json_decision(tmp_path, tiny_checkpoint, capsys):
    model = tiny_checkpoint("qwen2_5_vl")
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.png"
        Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(p)
        paths.append(str(p))
    assert infer.main(["--model", str(model), "--device", "cpu", "--max-new-tokens", "3", "--instruction", "go left", *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["frame"] == paths[-1]
    assert out["kind"] in {"actions", "waypoint", "pixel_goal", "look_down", "stop", "none"}
    assert out["engine"]["backbone"] == "qwen2_5_vl"


def test_infer_rejects_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert infer.main(["--instruction", "x", str(bad)]) == 2  # more cases: tests/test_cli_errors.py
    assert "cannot read image" in capsys.readouterr().err
