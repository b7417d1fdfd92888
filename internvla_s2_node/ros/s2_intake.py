"""Intake of the S2 node: the input callbacks (input group) and the episode they belong to.

The color callback decodes the frame, records it in the episode history (``engine.observe``)
and puts it in the 1-slot holder (newest wins; an overwritten frame counts as dropped), then
wakes the decision path (``s2_decisions``). Depth, camera info and odometry go to their stamped
buffers; an instruction starts a new episode. Every callback here is fast and never runs the model.
"""

from __future__ import annotations

import time

import numpy as np
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from ..core.images import InvalidFrame
from . import conversions as conv
from .pipeline import PendingFrame
from .qos import incompatible_qos_hint, latched_qos, reliable_qos, sensor_qos, sim_frames_qos

ON_REQUEST_HINT = ("decision_mode on_request subscribes reliable (the simulator bridge's frames); "
                   "a camera publishing best effort needs decision_mode continuous")
INSTRUCTION_HINT = ("instructions must be published reliable + transient local, e.g. "
                    "ros2 topic pub --once --qos-reliability reliable --qos-durability transient_local "
                    "/instruction std_msgs/msg/String \"data: 'go to the kitchen'\"")


def stamp_key(stamp) -> int:
    """A message stamp as integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def instruction_problem(text: str, max_chars: int) -> str:
    if not text or not text.strip():
        return "instruction is empty"
    if len(text) > max_chars:
        return f"instruction has {len(text)} characters, more than max_instruction_chars {max_chars}"
    return ""


class IntakeMixin:
    """Input callbacks of :class:`~internvla_s2_node.ros.s2_node.S2Node` (state lives on the node)."""

    def _create_inputs(self) -> list:
        """The input subscriptions (created at configure, in the input group)."""
        on_request = self._p["decision_mode"] == "on_request"  # fed by sim_bridge, which resends lost frames
        g, sq = self._input_group, sim_frames_qos() if on_request else sensor_qos()
        color_type = CompressedImage if self._p["use_compressed"] else Image
        subs = [  # image last: when several are ready at once, depth/odometry go first
            self.create_subscription(String, "instruction", self._on_instruction, latched_qos(), callback_group=g,
                                     event_callbacks=incompatible_qos_hint(self.get_logger(), "instruction", INSTRUCTION_HINT)),
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, sq, callback_group=g),
            self.create_subscription(Odometry, "odom", self._on_odom, sq, callback_group=g),
            self.create_subscription(Image, "depth", self._on_depth, sq, callback_group=g),
            self.create_subscription(color_type, "image", self._on_color, sq, callback_group=g,
                                     event_callbacks=incompatible_qos_hint(self.get_logger(), "image", ON_REQUEST_HINT)
                                     if on_request else None),
        ]
        if on_request:
            subs.append(self.create_subscription(Header, "~/decide", self._on_decide, reliable_qos(10), callback_group=g))
        return subs

    def _on_color(self, msg) -> None:
        arrived, arrived_unix = time.monotonic(), time.time()
        engine = self._engine
        if not self._active or engine is None:
            return
        self._counters.inc("frames_received")
        try:
            rgb = conv.compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else conv.image_to_rgb(msg)
        except conv.BadMessage as exc:
            return self._reject("image", exc)
        converted = time.monotonic()
        stamp = conv.stamp_to_float(msg.header.stamp)
        with self._frame_lock:  # the look-down decision and the slot change together
            if self._look_down_wait:
                self._look_down_wait = False
                item = PendingFrame(rgb, stamp, msg.header, None, self._episode, look_down=True)
            else:
                item = self._record_frame(engine, rgb, stamp, msg.header)
            if item is None:
                return
            item.arrived = arrived
            # in_s: the frame's stamp to this callback (DDS, when the stamp is this host's wall clock)
            item.trace = {"in_s": arrived_unix - stamp, "convert_s": converted - arrived, "record_s": item.received - converted,
                          "depth_convert_s": self._depth_convert_s}
            if self._p["decision_mode"] == "on_request":
                item = self._requests.add_frame(stamp_key(msg.header.stamp), item)
                if item is None:
                    return
            self._slot.put(item, protect=item.look_down or self._p["decision_mode"] == "on_request")
        self._wake.trigger()

    def _on_decide(self, msg: Header) -> None:
        """on_request mode: infer on the frame with this stamp (now, or when it arrives)."""
        if not self._active:
            return
        item = self._requests.add_request(stamp_key(msg.stamp))
        if item is not None:
            self._slot.put(item, protect=True)
            self._wake.trigger()

    def _record_frame(self, engine, rgb: np.ndarray, stamp: float, header) -> PendingFrame | None:
        """Record an ordinary frame in the history (caller holds the frame lock); None if it was not recorded."""
        if self._instruction is None:
            self._counters.inc("frames_without_instruction")
            return None
        interval, last = self._p["history_min_interval_s"], self._last_observed
        if interval > 0 and last is not None and 0 <= stamp - last < interval:
            self._counters.inc("frames_not_recorded")
            return None
        try:
            index = engine.observe(rgb)
        except InvalidFrame as exc:
            self._reject("image", exc)
            return None
        self._last_observed = stamp
        return PendingFrame(rgb, stamp, header, index, self._episode)

    def _on_depth(self, msg: Image) -> None:
        if self._engine is None:
            return
        t0 = time.monotonic()
        try:
            depth = conv.image_to_depth(msg, lazy=True)  # converted where a projection reads it
        except conv.BadMessage as exc:
            return self._reject("depth", exc)
        self._depth.add(conv.stamp_to_float(msg.header.stamp), depth)
        self._depth_convert_s = time.monotonic() - t0  # for the decision's trace

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            k = conv.camera_info_to_k(msg)
        except conv.BadMessage as exc:
            return self._reject("camera_info", exc)
        self._camera = (k, (int(msg.width), int(msg.height)))

    def _on_odom(self, msg: Odometry) -> None:
        try:
            t = conv.odometry_to_matrix(msg)
        except conv.BadMessage as exc:
            return self._reject("odom", exc)
        self._odom.add(conv.stamp_to_float(msg.header.stamp), (t, msg.header.frame_id or "odom"))

    def _on_instruction(self, msg: String) -> None:
        problem = instruction_problem(msg.data, self._p["max_instruction_chars"])
        if problem:
            return self._reject("instruction", problem)
        self._apply_instruction(msg.data)

    def _apply_instruction(self, text: str) -> bool:
        """New episode with ``text`` (history cleared, pending frame and look-down dropped)."""
        engine = self._engine
        if engine is not None:
            try:
                engine.reset(text)
            except ValueError as exc:
                self._reject("instruction", exc)
                return False
        with self._frame_lock:
            self._instruction = text
            self._episode += 1
            self._slot.clear()
            self._requests.clear()
            self._look_down_wait = False
            self._last_observed = None
        self._counters.inc("episodes")
        pub = self._pubs.get("active_instruction")
        if pub is not None:
            pub.publish(String(data=text))
        self.get_logger().info(f"new episode {self._episode}: {text[:120]!r}")
        return True

    def _on_reset(self, request, response):
        if self._engine is None:
            response.success, response.message = False, f"not configured (state {self._state_label})"
        elif self._instruction is None:
            response.success, response.message = False, "no instruction yet"
        else:
            response.success = self._apply_instruction(self._instruction)
            response.message = f"episode {self._episode}" if response.success else self._last_reject
        return response
