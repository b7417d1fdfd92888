"""``ros2 launch internvla_s2 ...`` as a user runs it: a params-file swap, Ctrl-C, sim.launch.py.

Needs the ``ros2`` command with its launch verb (a ROS distribution, or the ROS 2 launch kit that
scripts/test.sh installs when ../shared/ros2-launch-kit exists) and ``internvla_s2`` in the ament
index (ros2_ws built and its install/setup.bash sourced); skipped with the reason otherwise.
Tiny random-weight checkpoints (``tiny:<arch>``): plumbing, not navigation.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ros2launch", reason="the ros2 launch command is not installed (ROS 2 launch kit)")
from package_info import installed_share  # noqa: E402

SHARE = installed_share()


import ros_helpers as T  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROS2 = pathlib.Path(sys.executable).parent / "ros2"
DOMAIN = domain("launch_cli")  # the launches of this module run one after another
LOAD_TIMEOUT_S = 180.0


class Launch:
    """``ros2 launch internvla_s2 <file> <args>`` in its own process group."""

    def __init__(self, log: pathlib.Path, launch_file: str, domain: int, *arguments: str, environ=None) -> None:
        self.log = log
        env = dict(os.environ if environ is None else environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                   ROS_LOCALHOST_ONLY="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(ROS2), "launch", "internvla_s2", launch_file, *arguments],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """``{process name: pid}`` from launch's "process started with pid [N]" lines."""
        return {name: int(pid) for name, pid in re.findall(r"\[INFO\] \[([\w-]+)\]: process started with pid \[(\d+)\]",
                                                            self.text())}

    def ctrl_c(self, timeout: float = 30.0) -> int:
        """SIGINT to ``ros2 launch`` (as ``kill -INT``, ``timeout -s INT`` or a service manager send it); the exit code.

        Without a terminal on stdin launch forwards it to every process. (Ctrl-C in a terminal signals the
        whole process group, and launch, seeing the tty, does not forward it: each process gets one SIGINT.)
        """
        os.kill(self.proc.pid, signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"the launch did not end within {timeout:.0f} s:\n{self.text()[-3000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, AssertionError):
                self.ctrl_c(30)


def environ_of(pid: int) -> dict[str, str]:
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_params_file_backbone_swap_and_ctrl_c(tmp_path):
    """robot.launch.py with a one-line params file (tiny:qwen3_vl -> tiny:qwen2_5_vl), namespace,
    action_executor and the packaged DDS profile; then Ctrl-C ends every process cleanly."""
    params = tmp_path / "qwen25.yaml"
    params.write_text('s2_node:\n  ros__parameters:\n    model_path: "tiny:qwen2_5_vl"\n    device: "cpu"\n')
    launch = Launch(tmp_path / "launch.log", "robot.launch.py", DOMAIN, f"params_file:={params}",
                    "namespace:=robot1", "use_action_executor:=true", "dds_profile:=config/fastdds_large_frames.xml")
    try:
        with T.probe_on(DOMAIN, "/robot1/s2_node") as probe:
            diag = probe.wait_diagnostics(lambda d: d.get("state") == "active", timeout=LOAD_TIMEOUT_S)
            assert diag, launch.text()[-3000:]
            assert diag["backbone"] == "qwen2_5_vl", diag
            assert T.wait_for(lambda: ("action_executor", "/robot1") in probe.get_node_names_and_namespaces(), 30)
        pids = launch.pids()
        assert set(pids) == {"s2_node-1", "action_executor-2"}, launch.text()[-2000:]
        profile = str(SHARE / "config" / "fastdds_large_frames.xml")
        assert all(environ_of(pid).get("FASTDDS_DEFAULT_PROFILES_FILE") == profile for pid in pids.values())

        start = time.monotonic()
        code = launch.ctrl_c()
        took = time.monotonic() - start
    finally:
        launch.stop()
    text = launch.text()
    assert code == 0, text[-3000:]
    assert took < 20, f"Ctrl-C took {took:.1f} s"
    for name, pid in pids.items():
        assert f"[{name}]: process has finished cleanly [pid {pid}]" in text, text[-3000:]
    assert "SIGTERM" not in text and "SIGKILL" not in text, text[-3000:]


def test_ctrl_c_while_the_model_loads_aborts_the_load_and_exits_0(tmp_path):
    """Ctrl-C right after "loading model": the node ends at once with exit 0 (no failed transition)."""
    launch = Launch(tmp_path / "launch.log", "robot.launch.py", DOMAIN)
    try:
        assert T.wait_for(lambda: "loading model" in launch.text(), 60, period=0.02), launch.text()[-3000:]
        code = launch.ctrl_c()
    finally:
        launch.stop()
    text = launch.text()
    if "model loaded" in text:
        pytest.fail("the model finished loading before Ctrl-C arrived; the abort was not exercised:\n" + text[-2000:])
    assert code == 0, text[-3000:]
    assert "load aborted" in text and "process has finished cleanly" in text, text[-3000:]
    assert "errorprocessing" not in text and "SIGTERM" not in text, text[-3000:]


def headless_env() -> dict[str, str]:
    """No display and no MUJOCO_GL / PYOPENGL_PLATFORM: the evaluation must pick its GL platform itself."""
    return {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}


def test_sim_launch_evaluates_two_episodes_headless_and_ends_with_the_evaluation(tmp_path):
    out = tmp_path / "out"
    launch = Launch(tmp_path / "launch.log", "sim.launch.py", DOMAIN, f"out:={out}", "limit:=2", "max_steps:=3",
                    environ=headless_env())
    try:
        code = launch.wait(480)  # no Ctrl-C: the launch must end by itself when the evaluation does
    finally:
        launch.stop()
    text = launch.text()
    assert code == 0, text[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["s2"]["episodes"] == 2, summary
    records = [json.loads(line) for f in sorted((out / "s2").glob("episodes.rank*.jsonl")) for line in f.read_text().splitlines()]
    assert len(records) == 2 and all(r["failure"] == "" for r in records), [r["failure"] for r in records]
    assert all(r["s2_latency_s"] for r in records)  # every episode got decisions from s2_node over DDS
    assert all(r["s2_frames_lost"] in (0, None) for r in records), [r["s2_frames_lost"] for r in records]  # 640x480
    assert "MUJOCO_GL was unset and there is no display" in text, text[-3000:]
    assert "the evaluation finished: shutting down" in text
    assert re.search(r"\[s2_node-1\]: process has finished cleanly", text), text[-3000:]


def test_sim_launch_fails_when_the_evaluation_fails(tmp_path):
    launch = Launch(tmp_path / "launch.log", "sim.launch.py", DOMAIN, f"out:={tmp_path / 'out'}",
                    f"episodes:={tmp_path / 'missing.json.gz'}")
    try:
        code = launch.wait(120)
    finally:
        launch.stop()
    text = launch.text()
    assert code == 1, text[-3000:]
    assert "the evaluation (internvla-s2-eval) exited with code 2" in text, text[-3000:]
    # s2_node is shut down too (it may still be importing when the evaluation fails: then Python's own
    # KeyboardInterrupt ends it), without escalation to SIGTERM
    assert "[s2_node-1]: process has" in text and "SIGTERM" not in text, text[-3000:]


def test_ctrl_c_during_the_evaluation_ends_the_sim_launch_cleanly(tmp_path):
    """SIGINT to sim.launch.py mid-evaluation: exit 0, the evaluation's own Ctrl-C exit is no failure."""
    from internvla_s2_node.core.tiny import default_tiny_checkpoint

    model = T.biased_checkpoint(default_tiny_checkpoint("qwen3_vl"), tmp_path / "forward", "forward")
    params = tmp_path / "forward.yaml"
    params.write_text(f's2_node:\n  ros__parameters:\n    model_path: "{model}"\n    device: "cpu"\n')
    launch = Launch(tmp_path / "launch.log", "sim.launch.py", DOMAIN, f"out:={tmp_path / 'out'}",
                    f"params_file:={params}", "max_steps:=500")
    try:
        assert T.wait_for(lambda: "active: processing frames" in launch.text(), LOAD_TIMEOUT_S), launch.text()[-3000:]
        time.sleep(3)  # episodes under way
        assert launch.proc.poll() is None, launch.text()[-3000:]
        code = launch.ctrl_c()
    finally:
        launch.stop()
    text = launch.text()
    assert code == 0, text[-3000:]
    assert "exited with code" not in text and "SIGTERM" not in text, text[-3000:]
