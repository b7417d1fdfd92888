"""Soak: an s2_node fed at camera rate for a long time by a slower model; memory and latency over time.

A publisher *process* (``--publisher``, started by this script) sends color + depth + camera info +
odometry at ``--rate`` Hz over real DDS (localhost, own ``ROS_DOMAIN_ID``). This process runs the real
``S2Node`` (the real S2Engine; by default the tiny random-weight checkpoint on CPU plus
``inference_delay_s``, so inference is much slower than the camera) on a multi-threaded executor (`ros.executor.SubmitOnceExecutor`) and a
listener node that records every ``~/decision`` (step latency) and samples, every ``--sample-s``:

* RSS / peak RSS of this process, Python heap (tracemalloc: traced bytes) and gc object count,
  threads and open file descriptors;
* the node's 1-frame slot length, history frames (bounded by ``history_capacity`` + 1), odometry/depth
  buffer lengths, frames received / dropped / rejected, inferences, errors;
* step latency (mean, p50, p95, max of the decisions in the interval) and frame age.

A new instruction (new episode) is published every ``--instruction-period-s``. At the end: a CSV of
the samples, a JSON summary (machine, date, settings, slopes after warm-up: RSS MB/h, heap MB/h,
gc objects/h, latency ms/h) and a PNG plot, under ``--out``.

    source scripts/env.sh
    ROS_DOMAIN_ID=130 nohup .venv/bin/python benchmarks/soak.py --duration-s 3600 --out benchmarks/results &
    .venv/bin/python benchmarks/soak.py --duration-s 25 --warmup-s 10 --history-capacity 32 --out /tmp/soak

tests/test_soak_short.py runs the short form and asserts the bounds.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

FIELDS = [
    "t_s", "rss_mb", "rss_peak_mb", "heap_mb", "heap_peak_mb", "gc_objects", "threads", "fds",
    "slot_len", "history_frames", "history_episode_frames", "history_capacity", "odom_buffer", "depth_buffer",
    "frames_received", "frames_dropped", "frames_rejected", "frames_not_recorded", "inferences", "errors",
    "decisions", "step_ms_mean", "step_ms_p50", "step_ms_p95", "step_ms_max", "frame_age_ms", "episode",
    "step_cpu_ms_mean", "step_cpu_ms_p50", "proc_cpu_pct", "loadavg1",
]


# ------------------------------------------------------------------ publisher process
def run_publisher(args) -> None:
    import rclpy
    from rclpy.node import Node

    from internvla_s2_node.ros import conversions as conv
    import ros_feed as T  # benchmarks/, the script's folder
    from internvla_s2_node.ros.qos import sensor_qos
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = Node("soak_camera")
    sq = sensor_qos()
    pubs = {
        "odom": node.create_publisher(Odometry, "odom", sq),
        "info": node.create_publisher(CameraInfo, "camera_info", sq),
        "depth": node.create_publisher(Image, "depth", sq),
        "image": node.create_publisher(Image, "image", sq),
    }
    w, h = args.width, args.height
    images = [T.color_msg(0.0, w, h, value=v) for v in (60, 120, 180)]
    depth = T.depth_msg(0.0, w, h, metres=2.0, encoding="16UC1")
    info = T.camera_info_msg(0.0, w, h)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sent, late = 0, 0
    period = 1.0 / args.rate
    start = time.monotonic()
    end = start + args.duration_s
    nxt = start
    while not stop.is_set() and time.monotonic() < end:
        stamp = conv.float_to_stamp(time.time())
        odom = T.odom_msg(0.0, x=0.001 * (sent % 1000))
        img = images[sent % len(images)]
        for m in (odom, info, depth, img):
            m.header.stamp = stamp
        pubs["odom"].publish(odom)
        pubs["info"].publish(info)
        pubs["depth"].publish(depth)
        pubs["image"].publish(img)
        sent += 1
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
            if delay < -1.0:  # far behind (host stalled): do not burst to catch up
                nxt = time.monotonic()
    elapsed = time.monotonic() - start
    print(json.dumps({"sent": sent, "late": late, "elapsed_s": elapsed, "rate_hz": sent / max(elapsed, 1e-9)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# ------------------------------------------------------------------ measurements
def proc_status() -> dict[str, float]:
    out = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(rest.split()[0])
    return out


def slope_per_hour(ts, ys) -> float | None:
    """Least-squares slope of ys over ts (seconds), per hour."""
    pts = [(t, y) for t, y in zip(ts, ys) if y is not None]
    if len(pts) < 3:
        return None
    mt = statistics.fmean(t for t, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    if den == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in pts) / den * 3600.0


def theil_sen_per_hour(ts, ys) -> float | None:
    """Median of pairwise slopes (robust to the latency spikes a shared host causes), per hour."""
    pts = [(t, y) for t, y in zip(ts, ys) if y is not None]
    slopes = [(y2 - y1) / (t2 - t1) for i, (t1, y1) in enumerate(pts) for t2, y2 in pts[i + 1:] if t2 > t1]
    return statistics.median(slopes) * 3600.0 if slopes else None


def _median(rows, key: str) -> float | None:
    vals = [r.get(key) for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def window_medians(rows, key: str, window_s: float) -> list[dict]:
    """Median of ``key`` per window of ``window_s`` seconds."""
    out: dict[int, list] = {}
    for r in rows:
        if r.get(key) is not None:
            out.setdefault(int(r["t_s"] // window_s), []).append(r[key])
    return [{"from_min": round(k * window_s / 60, 1), key: round(statistics.median(v), 2)} for k, v in sorted(out.items())]


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = pathlib.Path("/proc/meminfo").read_text().splitlines()[0]
        info["mem_total_gb"] = round(int(mem.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["rmw"] = os.environ.get("RMW_IMPLEMENTATION", "")
    info["ros_domain_id"] = os.environ.get("ROS_DOMAIN_ID", "")
    info["note"] = "2 CPU cores shared with other engineers' test runs: latency noise is host load"
    return info


def summarize(rows: list[dict], args, publisher: dict, started: str) -> dict:
    warm = [r for r in rows if r["t_s"] >= args.warmup_s]
    ts = [r["t_s"] for r in warm]
    col = lambda k: [r[k] for r in warm]  # noqa: E731
    last = rows[-1] if rows else {}

    def growth(key):
        if len(warm) < 2:
            return None
        return warm[-1][key] - warm[0][key]

    lat = [r["step_ms_mean"] for r in warm if r["step_ms_mean"] is not None]
    half = len(lat) // 2
    summary = {
        "date": args.date,
        "started_utc": started,
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("publisher",)},
        "publisher": publisher,
        "duration_s": rows[-1]["t_s"] if rows else 0.0,
        "samples": len(rows),
        "warmup_s": args.warmup_s,
        "after_warmup": {
            "rss_mb_first": warm[0]["rss_mb"] if warm else None,
            "rss_mb_last": last.get("rss_mb"),
            "rss_mb_max": max(col("rss_mb"), default=None),
            "rss_growth_mb": growth("rss_mb"),
            "rss_slope_mb_per_h": slope_per_hour(ts, col("rss_mb")),
            "heap_growth_mb": growth("heap_mb"),
            "heap_slope_mb_per_h": slope_per_hour(ts, col("heap_mb")),
            "gc_objects_growth": growth("gc_objects"),
            "gc_objects_slope_per_h": slope_per_hour(ts, col("gc_objects")),
            "fds_growth": growth("fds"),
            "threads_growth": growth("threads"),
            "step_ms_mean": statistics.fmean(lat) if lat else None,
            "step_ms_slope_per_h": slope_per_hour(ts, col("step_ms_mean")),
            "step_ms_first_half_mean": statistics.fmean(lat[:half]) if half else None,
            "step_ms_second_half_mean": statistics.fmean(lat[half:]) if half else None,
            "step_ms_p50_median": _median(warm, "step_ms_p50"),
            "step_ms_p50_theil_sen_slope_per_h": theil_sen_per_hour(ts, col("step_ms_p50")),
            "rss_theil_sen_slope_mb_per_h": theil_sen_per_hour(ts, col("rss_mb")),
            "step_cpu_ms_p50_median": _median(warm, "step_cpu_ms_p50"),
            "step_cpu_ms_slope_per_h": slope_per_hour(ts, [r.get("step_cpu_ms_mean") for r in warm]),
            "step_cpu_ms_p50_theil_sen_slope_per_h": theil_sen_per_hour(ts, [r.get("step_cpu_ms_p50") for r in warm]),
            "loadavg1_median": _median(warm, "loadavg1"),
            "heap_theil_sen_slope_mb_per_h": theil_sen_per_hour(ts, col("heap_mb")),
        },
        "windows_5min": {
            "rss_mb": window_medians(warm, "rss_mb", 300.0),
            "heap_mb": window_medians(warm, "heap_mb", 300.0),
            "step_ms_p50": window_medians(warm, "step_ms_p50", 300.0),
            "step_cpu_ms_p50": window_medians(warm, "step_cpu_ms_p50", 300.0),
            "loadavg1": window_medians(warm, "loadavg1", 300.0),
        },
        "bounds": {
            "slot_len_max": max((r["slot_len"] for r in rows), default=0),
            "history_frames_max": max((r["history_frames"] for r in rows), default=0),
            "history_capacity": args.history_capacity,
            "odom_buffer_max": max((r["odom_buffer"] for r in rows), default=0),
            "depth_buffer_max": max((r["depth_buffer"] for r in rows), default=0),
        },
        "totals": {k: last.get(k) for k in ("frames_received", "frames_dropped", "frames_rejected",
                                            "frames_not_recorded", "inferences", "errors", "episode")},
    }
    if rows and rows[-1]["t_s"] > 0:
        summary["totals"]["received_hz"] = last["frames_received"] / rows[-1]["t_s"]
        summary["totals"]["inferences_hz"] = last["inferences"] / rows[-1]["t_s"]
    return summary


def plot(rows: list[dict], summary: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, ax = plt.subplots(2, 2, figsize=(13, 8))
    a = ax[0][0]
    a.plot(t, [r["rss_mb"] for r in rows], label="RSS (MB)")
    a.plot(t, [r["heap_mb"] for r in rows], label="Python heap, tracemalloc (MB)")
    a.axvline(summary["warmup_s"] / 60, color="grey", ls="--", lw=0.8, label="end of warm-up")
    s = summary["after_warmup"]
    a.set_title(f"memory after warm-up: RSS {s['rss_slope_mb_per_h']:+.1f} MB/h (Theil-Sen {s['rss_theil_sen_slope_mb_per_h']:+.1f}), "
                f"heap {s['heap_slope_mb_per_h']:+.2f} MB/h" if s["rss_slope_mb_per_h"] is not None else "memory", fontsize=9)
    a.legend(fontsize=8)
    a = ax[0][1]
    a.plot(t, [r["step_ms_mean"] for r in rows], label="step mean (ms)")
    a.plot(t, [r["step_ms_p95"] for r in rows], label="step p95 (ms)", alpha=0.6)
    a.set_title(f"step latency: p50 {s['step_ms_p50_median']:.0f} ms, p50 Theil-Sen slope "
                f"{s['step_ms_p50_theil_sen_slope_per_h']:+.1f} ms/h (spikes: host load)"
                if s["step_ms_p50_theil_sen_slope_per_h"] is not None else "step latency", fontsize=9)
    a.plot(t, [r["step_ms_p50"] for r in rows], label="step p50 (ms)")
    if any(r.get("step_cpu_ms_p50") is not None for r in rows):
        a.plot(t, [r.get("step_cpu_ms_p50") for r in rows], label="step CPU time p50 (ms, host-load free)", color="black")
        a2 = a.twinx()
        a2.plot(t, [r.get("loadavg1") for r in rows], color="grey", lw=0.6, alpha=0.6)
        a2.set_ylabel("load average (1 min)", fontsize=8)
        if s.get("step_cpu_ms_p50_theil_sen_slope_per_h") is not None:
            a.set_title(a.get_title() + f"\nstep CPU p50 {s['step_cpu_ms_p50_median']:.0f} ms, Theil-Sen "
                        f"{s['step_cpu_ms_p50_theil_sen_slope_per_h']:+.2f} ms/h", fontsize=9)
    a.set_yscale("log")
    a.legend(fontsize=8)
    a = ax[1][0]
    a.plot(t, [r["frames_received"] for r in rows], label="frames received")
    a.plot(t, [r["frames_dropped"] for r in rows], label="frames dropped (slot overwritten)")
    a.plot(t, [r["inferences"] for r in rows], label="inferences")
    a.set_title("counters (cumulative)")
    a.legend(fontsize=8)
    a.set_xlabel("minutes")
    a = ax[1][1]
    a.plot(t, [r["history_frames"] for r in rows], label="history frames")
    a.axhline(summary["bounds"]["history_capacity"], color="red", ls="--", lw=0.8, label="history_capacity")
    a.plot(t, [r["gc_objects"] / 1000 for r in rows], label="gc objects (k)")
    a.plot(t, [r["slot_len"] * 100 for r in rows], label="slot length x100", alpha=0.5)
    a.set_title("bounded state")
    a.legend(fontsize=8)
    a.set_xlabel("minutes")
    m = summary["machine"]
    fig.suptitle(f"s2_node soak {summary['date']}: {summary['duration_s'] / 60:.0f} min, "
                 f"{summary['settings']['rate']:.0f} Hz {summary['settings']['width']}x{summary['settings']['height']}, "
                 f"{summary['settings']['model_path']} + inference_delay_s {summary['settings']['inference_delay_s']} | "
                 f"{m.get('cpu', '')} x{m.get('cpus')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------ main (node + sampler)
def run(args) -> dict:
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from internvla_s2_node.ros.qos import latched_qos, reliable_qos
    from internvla_s2_node.ros.executor import SubmitOnceExecutor
    from internvla_s2_node.ros.s2_node import S2Node

    try:
        import torch

        torch.set_num_threads(args.torch_threads)
    except ImportError:
        pass
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"soak_{args.tag}_{args.date}"
    if not args.no_tracemalloc:
        tracemalloc.start(1)

    rclpy.init()
    overrides = [
        Parameter("model_path", value=args.model_path),
        Parameter("device", value="cpu"),
        Parameter("dtype", value="float32"),
        Parameter("max_new_tokens", value=args.max_new_tokens),
        Parameter("history_capacity", value=args.history_capacity),
        Parameter("inference_delay_s", value=float(args.inference_delay_s)),
    ]
    steps: list[tuple[float, float]] = []  # (step_s, frame age s)
    steps_lock = threading.Lock()
    node = S2Node(parameter_overrides=overrides)
    cpu_steps: list[float] = []  # CPU seconds of the inference thread per step: the work, whatever the host load
    real_step = node._step

    def timed_step(frame, item):
        c0 = time.thread_time()
        try:
            return real_step(frame, item)
        finally:
            with steps_lock:
                cpu_steps.append(time.thread_time() - c0)

    node._step = timed_step
    listener = Node("soak_listener")

    def on_decision(msg: String) -> None:
        d = json.loads(msg.data)
        age = time.time() - (d["stamp"]["sec"] + d["stamp"]["nanosec"] * 1e-9)
        with steps_lock:
            steps.append((d.get("step_s") or float("nan"), age))

    listener.create_subscription(String, "/s2_node/decision", on_decision, reliable_qos(100))
    instr_pub = listener.create_publisher(String, "instruction", latched_qos())
    executor = SubmitOnceExecutor(num_threads=4)
    executor.add_node(node)
    executor.add_node(listener)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()

    deadline = time.monotonic() + 300
    while not node._active and time.monotonic() < deadline:
        time.sleep(0.1)
    if not node._active:
        raise SystemExit(f"s2_node did not become active: {node._load_error}")
    episode_n = 0

    def instruct() -> None:
        nonlocal episode_n
        episode_n += 1
        instr_pub.publish(String(data=f"soak episode {episode_n}: walk to the far door and stop next to the chair"))

    instruct()
    while node._instruction is None and time.monotonic() < deadline:
        time.sleep(0.05)

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    pub = subprocess.Popen([sys.executable, __file__, "--publisher", "--rate", str(args.rate), "--width", str(args.width),
                            "--height", str(args.height), "--duration-s", str(args.duration_s)],
                           stdout=subprocess.PIPE, env=env, text=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    rows: list[dict] = []
    csv_path = stem.with_suffix(".csv")
    fh = open(csv_path, "w", newline="")
    writer = csv.DictWriter(fh, fieldnames=FIELDS)
    writer.writeheader()
    t0 = time.monotonic()
    next_instr = t0 + args.instruction_period_s
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now - t0 >= args.duration_s or pub.poll() is not None:
                break
            if now >= next_instr:
                instruct()
                next_instr += args.instruction_period_s
            stop.wait(min(args.sample_s, max(0.0, t0 + args.duration_s - now)))
            rows.append(sample(node, steps, steps_lock, time.monotonic() - t0, args, cpu_steps))
            writer.writerow(rows[-1])
            fh.flush()
    finally:
        pub.send_signal(signal.SIGTERM)
        try:
            pub_out, _ = pub.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pub.kill()
            pub_out, _ = pub.communicate()
        fh.close()
        executor.shutdown()
        node.release()
        node.destroy_node()
        listener.destroy_node()
        rclpy.try_shutdown()
    try:
        publisher = json.loads(pub_out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        publisher = {"error": "no report", "returncode": pub.returncode}
    summary = summarize(rows, args, publisher, started)
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    if not args.no_plot and rows:
        plot(rows, summary, stem.with_suffix(".png"))
    return summary


def rebuild(args) -> dict:
    """Summary + plot from the CSV an earlier run wrote (e.g. one cut short)."""
    path = pathlib.Path(args.from_csv)
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({k: (None if v == "" else float(v)) for k, v in r.items()})
    publisher, started, old = {"note": "rebuilt from CSV"}, f"see {path.name}", {}
    if path.with_suffix(".json").exists():  # keep what only the live run knew
        old = json.loads(path.with_suffix(".json").read_text())
        publisher, started = old.get("publisher", publisher), old.get("started_utc", started)
    summary = summarize(rows, args, publisher, started)
    if old.get("machine"):
        summary["machine"] = old["machine"]
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    if not args.no_plot and rows:
        plot(rows, summary, path.with_suffix(".png"))
    return summary


_last_cpu: list[float] = []


def sample(node, steps, steps_lock, t_s: float, args, cpu_steps=None) -> dict:
    with steps_lock:
        batch, steps[:] = list(steps), []
        cpu = sorted(x * 1e3 for x in (cpu_steps or []))
        if cpu_steps is not None:
            cpu_steps[:] = []
    now_cpu, now_wall = time.process_time(), time.monotonic()
    cpu_pct = None
    if _last_cpu:
        cpu_pct = 100.0 * (now_cpu - _last_cpu[0]) / max(now_wall - _last_cpu[1], 1e-9)
    _last_cpu[:] = [now_cpu, now_wall]
    st = proc_status()
    heap, heap_peak = tracemalloc.get_traced_memory()
    c = node._counters.snapshot()
    engine = node._engine
    step_ms = sorted(s * 1e3 for s, _ in batch if s == s)
    ages = [a * 1e3 for _, a in batch]

    def q(p):
        return step_ms[min(len(step_ms) - 1, int(p * len(step_ms)))] if step_ms else None

    return {
        "t_s": round(t_s, 2),
        "rss_mb": st.get("VmRSS", 0) / 1024,
        "rss_peak_mb": st.get("VmHWM", 0) / 1024,
        "heap_mb": heap / 2**20,
        "heap_peak_mb": heap_peak / 2**20,
        "gc_objects": len(gc.get_objects()),
        "threads": st.get("Threads", 0),
        "fds": len(os.listdir("/proc/self/fd")),
        "slot_len": len(node._slot),
        "history_frames": engine.history.kept if engine is not None else 0,  # frames held in memory
        "history_episode_frames": len(engine.history) if engine is not None else 0,  # frames seen this episode
        "history_capacity": engine.history.capacity if engine is not None else 0,
        "odom_buffer": len(node._odom),
        "depth_buffer": len(node._depth),
        "frames_received": c.get("frames_received", 0),
        "frames_dropped": node._slot.dropped,
        "frames_rejected": c.get("rejected", 0),
        "frames_not_recorded": c.get("frames_not_recorded", 0),
        "inferences": c.get("inferences", 0),
        "errors": c.get("errors", 0),
        "decisions": len(batch),
        "step_ms_mean": statistics.fmean(step_ms) if step_ms else None,
        "step_ms_p50": q(0.5),
        "step_ms_p95": q(0.95),
        "step_ms_max": step_ms[-1] if step_ms else None,
        "frame_age_ms": statistics.fmean(ages) if ages else None,
        "episode": node._episode,
        "step_cpu_ms_mean": statistics.fmean(cpu) if cpu else None,
        "step_cpu_ms_p50": cpu[len(cpu) // 2] if cpu else None,
        "proc_cpu_pct": cpu_pct,
        "loadavg1": os.getloadavg()[0],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--duration-s", type=float, default=3600.0)
    ap.add_argument("--warmup-s", type=float, default=300.0)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--model-path", default="tiny:qwen3_vl")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--inference-delay-s", type=float, default=0.2)
    ap.add_argument("--history-capacity", type=int, default=512)
    ap.add_argument("--instruction-period-s", type=float, default=600.0)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "results"))
    ap.add_argument("--tag", default="tiny_cpu")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-tracemalloc", action="store_true", help="heap_mb stays 0 (tracemalloc slows Python code)")
    ap.add_argument("--from-csv", help="only rebuild the JSON summary and the plot from a CSV of an earlier run "
                    "(pass that run's settings again)")
    args = ap.parse_args(argv)
    if args.publisher:
        return run_publisher(args)
    s = rebuild(args) if args.from_csv else run(args)
    a = s["after_warmup"]
    print(json.dumps({"duration_s": s["duration_s"], "totals": s["totals"], "bounds": s["bounds"],
                      "rss_slope_mb_per_h": a["rss_slope_mb_per_h"], "heap_slope_mb_per_h": a["heap_slope_mb_per_h"],
                      "step_ms_slope_per_h": a["step_ms_slope_per_h"], "step_ms_mean": a["step_ms_mean"],
                      "rss_growth_mb": a["rss_growth_mb"], "publisher": s["publisher"]}, indent=1))


if __name__ == "__main__":
    main()
