"""``s2_node``: the InternVLA-N1 System-2 policy as a ROS 2 lifecycle node.

The node is one class, :class:`S2Node`, put together from parts with one job each (state on
the node; pure logic in ``pipeline``, ``conversions``, ``outputs``, ``params``):

* here: parameters, lifecycle, topics created/destroyed, the node's state, ``main``.
* ``s2_intake`` (input group, MutuallyExclusive): color/depth/camera-info/odometry/
  instruction callbacks and ``~/reset``. The color callback records the frame in the
  episode history and puts it in a 1-slot holder (newest wins), then wakes the decision path.
* ``s2_decisions`` (inference group, MutuallyExclusive): a guard-condition callback takes
  the slot, pairs the frame with the nearest depth and odometry, runs ``engine.step`` and
  publishes. While it runs, newer frames only replace the slot: no queue grows.
* ``s2_diagnostics``: rejected inputs, throttled warnings and ``/diagnostics``.
* default group: lifecycle services, parameters, ``~/reset``, diagnostics.

Lifecycle: configure validates parameters and loads the model (failure -> FAILURE
with the reason logged and on /diagnostics; the process stays up), activate starts
processing/publishing, deactivate stops it (waits for the step in flight and empties
the CUDA cache), cleanup/shutdown close the engine (model and GPU memory freed).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from std_srvs.srv import Trigger

from ..cli.errors import guarded
from . import params
from .executor import spin
from .node_cli import parse_help
from .pipeline import Counters, LatencyStats, LatestSlot, LogThrottle, PendingFrame, RequestMatcher, StampedBuffer
from .qos import reliable_qos
from .s2_decisions import DecisionMixin, free_accelerator_memory
from .s2_diagnostics import DiagnosticsMixin
from .s2_intake import IntakeMixin

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
DEPTH_BUFFER_LEN = 10


def default_engine_factory(cfg):
    """Load the real engine (torch/transformers are imported only here)."""
    from ..core.engine import S2Engine

    return S2Engine(cfg)


class S2Node(IntakeMixin, DecisionMixin, DiagnosticsMixin, LifecycleNode):
    def __init__(self, node_name: str = "s2_node", *, engine_factory: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare(self, params.S2_SPECS)
        self._specs = params.specs_by_name(params.S2_SPECS)
        self._p = params.values(self, params.S2_SPECS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._engine_factory = engine_factory or default_engine_factory
        self._init_state()
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._infer_group = MutuallyExclusiveCallbackGroup()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self.create_timer(self._p["diagnostics_period_s"], self.publish_diagnostics)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._wake = self.create_guard_condition(self._infer_once, callback_group=self._infer_group)
        self._autostart_timer = self.create_timer(0.05, self._autostart) if self._p["autostart"] else None

    def _init_state(self) -> None:
        self._engine = None
        self._engine_info: dict[str, str] = {}
        self._engine_lock = threading.Lock()  # step vs close
        self._frame_lock = threading.Lock()  # look-down flag vs slot
        self._state_label = "unconfigured"
        self._active = False
        self._load_error = ""
        self._loading = False  # configure is inside the model loader
        self._instruction: str | None = None
        self._episode = 0
        self._look_down_wait = False
        self._last_observed: float | None = None
        self._slot: LatestSlot[PendingFrame] = LatestSlot()
        self._requests: RequestMatcher[PendingFrame] = RequestMatcher()
        self._odom: StampedBuffer = StampedBuffer(self._p["odom_buffer_s"])
        self._depth: StampedBuffer = StampedBuffer(self._p["odom_buffer_s"], maxlen=DEPTH_BUFFER_LEN)
        self._camera: tuple[np.ndarray, tuple[int, int]] | None = None
        self._depth_convert_s: float | None = None  # the last depth image's conversion (trace)
        self._counters = Counters()
        self._latency, self._frame_age = LatencyStats(), LatencyStats()
        self._throttle = LogThrottle(5.0)
        self._last_reject = self._last_none = ""
        self._step_error_at: float | None = None  # monotonic time of the last failed step
        self._subs: list = []
        self._pubs: dict[str, Any] = {}

    # ------------------------------------------------------------ parameters
    def _on_set_parameters(self, changes) -> SetParametersResult:
        for p in changes:
            reason = params.check_change(self._specs.get(p.name), p.value, self._engine is not None, self._state_label)
            if reason:
                self.get_logger().warn(f"rejected parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        for p in changes:
            if p.name in self._specs:
                self._p[p.name] = p.value
        self._odom.horizon_s = self._depth.horizon_s = self._p["odom_buffer_s"]
        return SetParametersResult(successful=True)

    def _config_problems(self) -> list[str]:
        problems = [r for s in params.S2_SPECS if (r := params.check_value(s, self._p[s.name]))]
        if not problems:
            try:
                params.engine_config(self._p)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    # ------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        params.warn_unknown(self, params.S2_SPECS)  # typos in a params file: ignored by ROS, named here
        problems = self._config_problems()
        if problems:
            return self._fail_configure("invalid parameters: " + "; ".join(problems))
        cfg = params.engine_config(self._p)
        self.get_logger().info(f"loading model {cfg.model_path!r} (device {cfg.device}, dtype {cfg.dtype})")
        self._loading = True
        try:
            engine = self._engine_factory(cfg)
        except Exception as exc:  # any loader error must leave the node up and unconfigured
            free_accelerator_memory()
            return self._fail_configure(f"cannot load model {cfg.model_path!r}: {type(exc).__name__}: {exc}")
        finally:
            self._loading = False
        self._engine, self._load_error = engine, ""
        self._engine_info = dict(getattr(engine, "info", {}) or {})
        self._create_io()
        if self._instruction:
            self._apply_instruction(self._instruction)
        self._state_label = "inactive"
        self.get_logger().info("model loaded: " + ", ".join(f"{k}={v}" for k, v in self._engine_info.items()))
        return SUCCESS

    def _fail_configure(self, reason: str) -> TransitionCallbackReturn:
        self._load_error = reason
        self._counters.error(reason)
        self.get_logger().error(f"configure failed: {reason}")
        self.publish_diagnostics()
        return FAILURE

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._slot.clear()
        self._active, self._state_label = True, "active"
        self.get_logger().info("active: processing frames")
        return SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state_label = "inactive"
        return SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error("error processing: releasing the model")
        self.release()
        return SUCCESS

    def _stop_processing(self, free: bool = True) -> None:
        self._active = False
        with self._frame_lock:
            self._slot.clear()
            self._requests.clear()
            self._look_down_wait = False
        with self._engine_lock:  # waits for the step in flight, whose result is then dropped
            pass
        if free:
            free_accelerator_memory()

    def release(self) -> None:
        """Stop, destroy topics and close the engine (frees the model and GPU memory). Idempotent."""
        self._stop_processing(free=False)  # one garbage collection, below: each takes ~0.3 s with a model loaded
        self._destroy_io()
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()  # frees accelerator memory
            if self.context.ok():  # after Ctrl-C the context is gone and rosout with it
                self.get_logger().info("model released")
        else:
            free_accelerator_memory()
        self._state_label = "unconfigured"

    def abandon_load(self) -> None:
        """On Ctrl-C / shutdown: if configure is inside the model loader, end the process now (exit 0).

        The loader (transformers) cannot be interrupted from another thread; waiting for it would
        hold a shutdown for as long as the load takes and then fail the transition on a finished
        context ("Failed to complete transition 1 ... errorprocessing"), and launch would escalate to
        SIGTERM. Only the node's own process calls this (``main``), never an in-process user.
        """
        if self._loading:
            print(f"[{self.get_name()}] shutdown requested while loading the model: load aborted", file=sys.stderr,
                  flush=True)
            os._exit(0)

    # ------------------------------------------------------------ topics
    def _create_io(self) -> None:
        self._subs = self._create_inputs()
        self._pubs = self._create_outputs()

    def _destroy_io(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._subs, self._pubs = [], {}


@guarded("s2_node")
def main(args=None) -> None:
    argv = list(sys.argv if args is None else args)
    parse_help(argv, "s2_node", __doc__)
    rclpy.init(args=argv)
    node = S2Node()
    spin([node], on_stop=node.abandon_load)


if __name__ == "__main__":
    sys.exit(main())
