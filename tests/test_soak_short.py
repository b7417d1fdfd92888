"""Short soak: benchmarks/soak.py for ~20 s (30 Hz camera from a separate publisher process, real DDS,
a real tiny checkpoint made slower than the camera with ``inference_delay_s``). Asserts the bounds the
one-hour run (benchmarks/results/soak_*) reports: memory flat after warm-up, slot length <= 1,
dropped frames counted, history frames <= history_capacity, bounded sensor buffers, no errors.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from ros_domains import domain  # noqa: E402

pytest.importorskip("rclpy")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[1]


DOMAIN_ID = domain("soak_short")
CAPACITY = 32


def test_soak_short(tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", OMP_NUM_THREADS="1",
               MALLOC_ARENA_MAX="2")  # fewer per-thread malloc arenas: RSS then shows growth, not arena noise
    cmd = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration-s", "24", "--warmup-s", "12",
           "--sample-s", "1", "--width", "160", "--height", "120", "--inference-delay-s", "0.1",
           "--history-capacity", str(CAPACITY), "--instruction-period-s", "12", "--out", str(tmp_path),
           "--tag", "short", "--date", "test", "--no-plot"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((tmp_path / "soak_short_test.json").read_text())
    print("\n" + json.dumps({k: s[k] for k in ("duration_s", "totals", "bounds", "after_warmup")}, indent=1))
    b, t, a = s["bounds"], s["totals"], s["after_warmup"]
    assert s["samples"] >= 15 and s["publisher"]["rate_hz"] > 25
    assert b["slot_len_max"] <= 1
    assert 0 < b["history_frames_max"] <= CAPACITY + 1  # + the current frame
    assert b["depth_buffer_max"] <= 10 and b["odom_buffer_max"] <= 2.0 * 30 + 5
    # Throughput is not asserted: best-effort delivery of 640x480 frames with Fast DDS's default transport
    # varies with host load (benchmarks/results/soak_tiny_cpu_2026-11-25.md; the spin-thread starvation of
    # the 2026-11-24 run is fixed by ros/executor.py). Enough frames for the bounds:
    assert t["frames_received"] > 40 and t["inferences"] >= 3
    # every frame the model had no time for was counted as dropped (a few go stale at the episode change)
    assert t["frames_dropped"] > 0 and t["frames_dropped"] + t["inferences"] <= t["frames_received"]
    assert t["frames_dropped"] >= t["frames_received"] - t["inferences"] - 10  # a few go stale at the episode change
    assert t["errors"] == 0 and t["episode"] >= 2  # a second instruction came in mid-run
    # history is capped (32 frames of 384x384 = 14 MB); the rest is allocator noise on a shared host
    assert a["rss_growth_mb"] < 50, a
    assert a["heap_growth_mb"] < 5, a
    assert a["threads_growth"] == 0 and a["fds_growth"] <= 2, a
