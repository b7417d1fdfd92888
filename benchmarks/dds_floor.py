"""The floor under e2e_dds.py's ``in`` and ``out`` parts (issue 14 item 5): the same four messages per frame
(odometry, camera info, 16UC1 depth, 640x480 rgb8, same stamp, image last) over the same DDS profile into a
bare echo process that does nothing but answer each color frame with a small String, as the S2 node answers
with ``~/decision``.

The echo runs with rclpy's SingleThreadedExecutor (``single``) or with the node's executor
(``SubmitOnceExecutor``, 4 threads, the four subscriptions in one MutuallyExclusive group as in the node:
``node``); the variants alternate, ``--rounds`` each. Per frame: ``in`` = the echo's image callback starts -
the frame's stamp (the driver's publish included), ``e2e`` = the echo received back - stamp.

    source scripts/env.sh; PYTHONPATH=$PWD ROS_DOMAIN_ID=80 .venv/bin/python benchmarks/dds_floor.py run --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import pct  # noqa: E402

TOPICS = ("odom", "camera_info", "depth", "image")


def echo(args) -> None:
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from internvla_s2_node.ros.executor import SubmitOnceExecutor
    from internvla_s2_node.ros.qos import reliable_qos, sensor_qos

    rclpy.init()
    node = Node("dds_floor_echo")
    group = MutuallyExclusiveCallbackGroup() if args.executor == "node" else None
    pub = node.create_publisher(String, "dds_floor/echo", reliable_qos(100))

    def on_image(msg) -> None:
        t = time.time()
        ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        pub.publish(String(data=json.dumps({"stamp": ns, "in_s": t - ns * 1e-9})))

    for name, typ in zip(TOPICS, (Odometry, CameraInfo, Image, Image)):
        node.create_subscription(typ, name, on_image if name == "image" else (lambda m: None), sensor_qos(), callback_group=group)
    executor = SubmitOnceExecutor(num_threads=4) if args.executor == "node" else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
        rclpy.try_shutdown()


def run(args) -> None:
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config/fastdds_large_frames.xml")
    import rclpy
    from builtin_interfaces.msg import Time
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header, String

    import ros_feed as T
    from e2e_dds import make_frames
    from internvla_s2_node.ros import conversions as conv
    from internvla_s2_node.ros.qos import reliable_qos, sensor_qos

    rclpy.init()
    drv = Node("dds_floor_driver")
    pubs = [drv.create_publisher(t, n, sensor_qos()) for n, t in zip(TOPICS, (Odometry, CameraInfo, Image, Image))]
    rows, lock = [], threading.Lock()

    def on_echo(msg) -> None:
        t = time.time_ns()
        d = json.loads(msg.data)
        with lock:
            rows.append((d["stamp"], t, d["in_s"]))

    drv.create_subscription(String, "dds_floor/echo", on_echo, reliable_qos(100))
    ex = SingleThreadedExecutor()
    ex.add_node(drv)
    threading.Thread(target=ex.spin, daemon=True).start()
    rgb, depth = make_frames(1, 640, 480)[0]
    h = Header(frame_id="camera_optical")
    msgs = [T.odom_msg(0.0), T.camera_info_msg(0.0, 640, 480), conv.depth_to_image(depth, "16UC1", h), conv.array_to_image(rgb, "rgb8", h)]
    results = []
    for rnd in range(args.rounds):
        for variant in (("single", "node") if rnd % 2 == 0 else ("node", "single")):
            cmd = [sys.executable, __file__, "echo", "--executor", variant]
            proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            T.wait_for(lambda: pubs[3].get_subscription_count() > 0, 30)
            time.sleep(1.0)
            stamps, pub_s, t0, k = [], [], time.monotonic(), 0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(max(0.0, t0 + k / args.rate - time.monotonic()))
                ns = time.time_ns()
                stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
                p0 = time.perf_counter()
                for m, p in zip(msgs, pubs):
                    m.header.stamp = stamp
                    p.publish(m)
                pub_s.append(time.perf_counter() - p0)
                stamps.append(ns)
                k += 1
            time.sleep(0.5)
            T.stop_process(proc, timeout=10)
            mine = set(stamps)
            with lock:
                got = [r for r in rows if r[0] in mine]
            results.append({"variant": variant, "round": rnd, "published": len(stamps), "answered": len(got),
                            "in_ms": [r[2] * 1e3 for r in got], "e2e_ms": [(r[1] - r[0]) * 1e-6 for r in got],
                            "publish_ms": [s * 1e3 for s in pub_s]})  # fmt: skip
            print(f"[{variant} round {rnd}] answered {len(got)}/{len(stamps)}", flush=True)
    ex.shutdown()
    rclpy.try_shutdown()
    summary = {}
    for variant in ("single", "node"):
        sel = [r for r in results if r["variant"] == variant]
        summary[variant] = {k: {"p50": pct([v for r in sel for v in r[k]], 0.5), "p90": pct([v for r in sel for v in r[k]], 0.9)}
                            for k in ("publish_ms", "in_ms", "e2e_ms")}  # fmt: skip
        summary[variant]["answered"] = sum(r["answered"] for r in sel)
        summary[variant]["published"] = sum(r["published"] for r in sel)
    print(json.dumps(summary, indent=1))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"summary": summary, "rounds": results, "rate_hz": args.rate,
                                                      "seconds": args.seconds}, indent=1))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--executor", choices=("single", "node"), default="single")
    r = sub.add_parser("run")
    r.add_argument("--seconds", type=float, default=20.0)
    r.add_argument("--rate", type=float, default=10.0)
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--out", default="")
    args = ap.parse_args()
    (echo if args.cmd == "echo" else run)(args)


if __name__ == "__main__":
    main()
