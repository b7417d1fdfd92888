"""Reporting of the S2 node: rejected inputs and throttled warnings, and the ``/diagnostics`` status.

Counters and last reasons are kept on the node; ``diagnostics_values`` is what ``/diagnostics``
carries (see config/README.md), ``_level`` its OK / WARN / ERROR level and message.
"""

from __future__ import annotations

import math
import time
from typing import Any

from . import outputs as out

DIAG_NAME = "internvla_s2: s2_node"
STEP_ERROR_HOLD_S = 10.0  # /diagnostics stays ERROR this long after a failed step


class DiagnosticsMixin:
    """Rejections, warnings and diagnostics of :class:`~internvla_s2_node.ros.s2_node.S2Node`."""

    def _reject(self, kind: str, reason: Any) -> None:
        self._counters.inc("rejected")
        self._counters.inc(f"rejected_{kind}")
        self._last_reject = f"{kind}: {reason}"
        self._warn(f"reject_{kind}", f"skipped {kind} message: {reason}")

    def _warn(self, key: str, text: str) -> None:
        if self._throttle.ok(key):
            n = self._throttle.suppressed(key)
            self.get_logger().warn(text + (f" ({n} similar suppressed)" if n else ""))

    def diagnostics_values(self) -> dict[str, Any]:
        c = self._counters.snapshot()
        engine = self._engine
        ms = lambda v: None if v is None or not math.isfinite(v) else v * 1e3  # noqa: E731
        values = {
            "state": self._state_label,
            **{k: self._engine_info.get(k, "") for k in ("backbone", "device", "dtype", "model_path", "generator")},
            "model_path_parameter": self._p["model_path"],
            "instruction": (self._instruction or "")[:80],
            "episode": self._episode,
            "history_frames": len(engine.history) if engine is not None and hasattr(engine, "history") else 0,
            "frames_received": c.get("frames_received", 0),
            "frames_dropped": self._slot.dropped,
            "frames_too_old": c.get("frames_too_old", 0),
            "frames_pending": len(self._slot),
            "frames_rejected": c.get("rejected", 0),
            "inferences": c.get("inferences", 0),
            "step_latency_ms": ms(self._latency.last),
            "step_latency_mean_ms": ms(self._latency.mean),
            "frame_age_ms": ms(self._frame_age.last),
            "waypoints_published": c.get("waypoints_published", 0),
            "waypoints_rejected": c.get("waypoints_rejected", 0),
            "errors": c.get("errors", 0),
            "last_error": self._load_error or self._counters.last_error,
            "last_rejected_input": self._last_reject,
            "last_no_decision": self._last_none,
        }
        values.update({k: v for k, v in c.items() if k.startswith(("rejected_", "decisions_"))})
        serving = getattr(engine, "serving", None) if engine is not None else None
        if isinstance(serving, dict):  # live: the plain path serves while the fast path builds
            values.update(serving)
        return values

    def _level(self) -> tuple[bytes, str]:
        if self._load_error and self._engine is None:
            return out.ERROR, self._load_error
        if not self._active:
            return out.WARN, f"not active ({self._state_label})"
        if self._instruction is None:
            return out.WARN, "waiting for an instruction"
        err_at = self._step_error_at
        if err_at is not None and time.monotonic() - err_at < STEP_ERROR_HOLD_S:
            return out.ERROR, self._counters.last_error or "step failed"
        return out.OK, "running"

    def publish_diagnostics(self) -> None:
        level, message = self._level()
        arr = out.diagnostic_array(self.get_clock().now().to_msg(), DIAG_NAME, self._engine_info.get("backbone", ""),
                                   level, message, self.diagnostics_values())
        self._diag_pub.publish(arr)
