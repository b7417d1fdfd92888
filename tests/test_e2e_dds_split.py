"""benchmarks/e2e_dds.py's split of a decision's e2e into the node's trace parts (pure arithmetic, no ROS)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
e2e_dds = pytest.importorskip("e2e_dds")

STAMP = 1_000_000_000_000_000_000  # ns


def _decision(recv_after_s: float) -> dict:
    trace = {"in_s": 0.004, "convert_s": 0.0001, "record_s": 0.0025, "depth_convert_s": 0.0003, "pair_s": 0.0002,
             "gen_pre_s": 0.002, "model_s": 0.07, "outputs_s": 0.0003, "sent_unix": STAMP * 1e-9 + 0.080}  # fmt: skip
    return {"stamp": STAMP, "recv": STAMP + int(recv_after_s * 1e9), "step_s": 0.0725, "queue_s": 0.0004,
            "intake_s": 0.0026, "post_s": 0.0003, "kind": "stop", "looked_down": False, "trace": trace}  # fmt: skip


def test_parts_add_up_to_e2e_and_the_rest_is_what_is_left():
    d = _decision(0.0815)
    (row,) = e2e_dds.decompose([d], {STAMP: 0.0012})
    parts = row["parts"]
    assert parts["engine_other"] == pytest.approx(0.0725 - 0.07 - 0.002)
    assert parts["out"] == pytest.approx(0.0015, abs=1e-6)
    assert parts["publish"] == 0.0012  # inside `in`, not added again
    summed = sum(v for k, v in parts.items() if k not in ("depth_convert", "publish", "rest"))
    assert summed + parts["rest"] == pytest.approx(row["e2e"])
    assert parts["rest"] == pytest.approx(0.0, abs=1e-6)
    assert e2e_dds.beyond_model(parts) == pytest.approx(row["e2e"] - 0.07)


def test_a_decision_without_trace_has_no_parts_and_pooling_skips_it():
    d = _decision(0.09)
    del d["trace"]
    (row,) = e2e_dds.decompose([d], {STAMP})
    assert "parts" not in row
    phase = {"per_frame_ms": [[90.0, 72.5, 0.4]], "per_frame_parts_ms": []}
    pooled = e2e_dds.pooled([phase])
    assert pooled["answered"] == 1 and "e2e_minus_model" not in pooled
    assert pooled["overhead"][0] == pytest.approx(90.0 - 72.5 - 0.4)
