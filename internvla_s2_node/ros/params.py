"""Parameter declarations, validation and EngineConfig construction.

The tables below are the declarations; ``config/robot.yaml`` repeats every default
once (tests/test_ros_params.py checks that they agree), so the YAML is the file a
user reads and edits. Rules:

* ``read_only``: fixed for the life of the process (ROS enforces it).
* ``lifecycle``: only settable in the *unconfigured* state; they take effect at the
  next ``configure`` (model_path, device, dtype, topics/QoS, engine settings).
  Setting one while the model is loaded is rejected with a reason.
* everything else can change at any time and applies to the next frame.

``model_path: "tiny:<arch>"`` (e.g. ``tiny:qwen3_vl``) means
``core.tiny.default_tiny_checkpoint(<arch>)``: a small random-weight checkpoint
built on first use (``core.model_ref``), for plumbing tests and demos.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from ..core.config import (
    ATTN_IMPLEMENTATIONS,
    CONJUNCTION_MODES,
    DEVICE_RE,
    DTYPES,
    FAST_PATH_BUILDS,
    FAST_PATH_MODES,
    LOOK_DOWN_IN_LIST,
    LOOK_DOWN_MODES,
    PROMPT_PUNCTUATIONS,
    EngineConfig,
)

INT_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False
    lifecycle: bool = False

    @property
    def ros_type(self) -> int:
        return _ROS_TYPES[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, type=self.ros_type, description=self.description, read_only=self.read_only)
        notes = []
        if self.choices:
            notes.append("one of: " + ", ".join(self.choices))
        if self.lifecycle:
            notes.append("changeable only while unconfigured; applies at configure")
        d.additional_constraints = "; ".join(notes)
        if self.low is not None and isinstance(self.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(self.low), to_value=float(self.high), step=0.0)]
        elif self.low is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            d.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        return d


_ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


DECISION_MODES = ("continuous", "on_request")


def _s(name, default, description, **kw) -> Spec:
    return Spec(name, default, description, **kw)


# ------------------------------------------------------------------ s2_node
ENGINE_SPECS: tuple[Spec, ...] = (
    _s("model_path", "tiny:qwen3_vl", "S2 checkpoint directory (Qwen3-VL, Qwen3-VL-MoE, Qwen2.5-VL, Qwen2-VL; backbone "
       "detected from config.json), or 'tiny:<arch>' for a random-weight test checkpoint", lifecycle=True),
    _s("device", "auto", "torch device: auto, cpu, cuda or cuda:N", lifecycle=True),
    _s("dtype", "auto", "weights dtype", choices=DTYPES, lifecycle=True),
    _s("attn_implementation", "auto", "attention kernel", choices=ATTN_IMPLEMENTATIONS, lifecycle=True),
    _s("fast_path", "auto", "cached generation path (auto: use it when available)", choices=FAST_PATH_MODES, lifecycle=True),
    _s("fast_path_build", "auto", "background: the plain path answers from the first frame while the fast path compiles in a "
       "thread, then takes over between steps; inline: the fast path compiles in its first steps; auto: background on CUDA",
       choices=FAST_PATH_BUILDS, lifecycle=True),
    _s("prefix_reuse", True, "fast path: keep the K/V of the prompt's leading part that equals the last step's (text, frame 0, "
       "history frames up to the first that changed) and prefill only the rest; same tokens in float32 (tested on CPU and CUDA)",
       lifecycle=True),
    _s("compile_cache_dir", "", "torch compile cache directory ('' = $INTERNVLA_S2_CACHE/compile, default "
       "~/.cache/internvla_s2/compile; 'off' = torch's default); prepare it with python -m internvla_s2_node.cli.prepare_cache",
       lifecycle=True),
    _s("num_history", 8, "history frames shown to the model per step", low=0, high=64, lifecycle=True),
    _s("history_capacity", 512, "episode frames kept in memory (older ones thinned)", low=2, high=100000, lifecycle=True),
    _s("resize_w", 384, "model input width (px)", low=28, high=4096, lifecycle=True),
    _s("resize_h", 384, "model input height (px)", low=28, high=4096, lifecycle=True),
    _s("max_new_tokens", 24, "generation limit per answer", low=1, high=1024, lifecycle=True),
    _s("look_down_mode", "requery", "requery: ask again on the current frame; command: publish LOOK_DOWN and use the next "
       "frame as the look-down image", choices=LOOK_DOWN_MODES, lifecycle=True),
    _s("conjunction_mode", "random", "phrase introducing the current frame", choices=CONJUNCTION_MODES, lifecycle=True),
    _s("prompt_punctuation", "one_period", "one_period: the instruction ends with one period before 'Where should you "
       "go next' (upstream's robot agent for period-terminated text); habitat_evaluator: no period there, the token "
       "ids of upstream's Habitat evaluator", choices=PROMPT_PUNCTUATIONS, lifecycle=True),
    _s("seed", 0, "seed of the phrase picker", low=0, high=INT_MAX, lifecycle=True),
    _s("min_depth", 0.1, "nearest valid depth (m)", low=0.0, high=100.0, lifecycle=True),
    _s("max_depth", 10.0, "farthest valid depth (m)", low=0.01, high=1000.0, lifecycle=True),
    _s("depth_window", 5, "search radius (px) for a valid depth around the pixel goal", low=0, high=100, lifecycle=True),
    _s("max_actions", 128, "longest action sequence taken from one answer (upstream executes all of an answer of "
       "up to 128 tokens)", low=1, high=1024, lifecycle=True),
    _s("look_down_in_list", "skip", "skip: a ↓ among other actions is dropped and the moves around it are published "
       "(upstream's robot client); execute: it stays in the list, the simulator tilts and runs the rest tilted "
       "(upstream's Habitat evaluator; needs look_down_mode command)", choices=LOOK_DOWN_IN_LIST, lifecycle=True),
    _s("max_look_downs", 2, "command mode: look-down turns in a row before an answer of ↓ gives no decision "
       "(2: 60 deg, upstream's tilt after a second ↓)", low=1, high=5, lifecycle=True),
    _s("max_instruction_chars", 2000, "longer instructions are rejected", low=1, high=1000000, lifecycle=True),
)

NODE_SPECS: tuple[Spec, ...] = (
    _s("autostart", True, "configure and activate on start (no lifecycle manager needed)", read_only=True),
    _s("use_compressed", False, "subscribe to sensor_msgs/CompressedImage on 'image' instead of sensor_msgs/Image",
       lifecycle=True),
    _s("camera_extrinsic.x", 0.0, "camera position in the odometry child (base) frame, x forward (m)", low=-10.0, high=10.0),
    _s("camera_extrinsic.y", 0.0, "camera position in the base frame, y left (m)", low=-10.0, high=10.0),
    _s("camera_extrinsic.z", 0.88, "camera height above the base frame origin (m)", low=-10.0, high=10.0),
    _s("camera_extrinsic.roll", 0.0, "camera roll in the base frame (rad)", low=-math.pi, high=math.pi),
    _s("camera_extrinsic.pitch", 0.0, "camera pitch in the base frame, positive tilts down (rad)", low=-math.pi, high=math.pi),
    _s("camera_extrinsic.yaw", 0.0, "camera yaw in the base frame (rad)", low=-math.pi, high=math.pi),
    _s("decision_mode", "continuous", "continuous: infer on the newest frame whenever the model is free; on_request: "
       "infer only on frames whose stamp is requested on ~/decide (simulated evaluation)", choices=DECISION_MODES,
       lifecycle=True),
    _s("look_down_pitch", 0.5236, "extra pitch (rad) of the look-down frame in command mode (30 deg)", low=0.0, high=1.5708),
    _s("max_waypoint_distance", 5.0, "waypoints farther (m, planar, from the camera) are not published", low=0.1, high=100.0),
    _s("max_frame_age_s", 0.0, "continuous mode: skip a frame that waited longer than this (s) for the model and "
       "start on the next one as it arrives: frame-to-action latency ~ step latency, fewer decisions (0: newest frame)",
       low=0.0, high=10.0),
    _s("history_min_interval_s", 0.0, "record a frame in the history only if this long after the last (0: every frame); "
       "only recorded frames are used for inference", low=0.0, high=60.0),
    _s("odom_buffer_s", 2.0, "odometry kept to find the sample nearest to an image stamp (s)", low=0.1, high=60.0),
    _s("odom_tolerance_s", 0.1, "largest image-odometry stamp difference for a camera pose (s)", low=0.0, high=10.0),
    _s("depth_tolerance_s", 0.1, "largest image-depth stamp difference (s)", low=0.0, high=10.0),
    _s("diagnostics_period_s", 1.0, "period of /diagnostics (s)", low=0.05, high=60.0, read_only=True),
    _s("inference_delay_s", 0.0, "testing only: sleep before each model step to simulate a slow model (s)",
       low=0.0, high=60.0),
)

S2_SPECS: tuple[Spec, ...] = ENGINE_SPECS + NODE_SPECS

# ------------------------------------------------------------------ action_executor
EXECUTOR_SPECS: tuple[Spec, ...] = (
    _s("max_linear_speed", 0.25, "forward speed limit (m/s)", low=0.01, high=2.0),
    _s("max_angular_speed", 0.5, "turn rate limit (rad/s)", low=0.01, high=4.0),
    _s("forward_step_m", 0.25, "distance of one FORWARD action (m)", low=0.01, high=2.0),
    _s("turn_step_deg", 15.0, "angle of one LEFT/RIGHT action (deg)", low=1.0, high=180.0),
    _s("use_odometry", True, "close the loop on odometry (else open-loop timing); waypoints need odometry"),
    _s("control_rate_hz", 20.0, "cmd_vel rate while moving (Hz)", low=1.0, high=200.0, read_only=True),
    _s("step_timeout_s", 5.0, "an action step not finished after this long is abandoned and the robot stops (s)",
       low=0.1, high=120.0),
    _s("odom_timeout_s", 0.5, "stop when odometry is older than this while it is used (s)", low=0.05, high=10.0),
    _s("waypoint_tolerance_m", 0.15, "distance at which a waypoint counts as reached (m)", low=0.01, high=5.0),
    _s("waypoint_timeout_s", 30.0, "stop following a waypoint after this long (s)", low=0.5, high=600.0),
    _s("heading_tolerance_rad", 0.35, "turn in place until the waypoint is within this bearing (rad)", low=0.01, high=3.14),
)

NODE_NAMES = {"s2_node": S2_SPECS, "action_executor": EXECUTOR_SPECS}


def specs_by_name(specs: Iterable[Spec]) -> dict[str, Spec]:
    return {s.name: s for s in specs}


# Parameters every rclpy node accepts that no spec declares.
ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_event_publisher")


def declare(node, specs: Iterable[Spec]) -> None:
    """Declare every spec on ``node`` (values from a params file override the defaults).

    A whole number given for a float parameter (``5`` for ``5.0``) is taken as that float; any
    other type mismatch is a ValueError with one line naming the parameter, instead of
    rclpy's InvalidParameterTypeException.
    """
    specs = list(specs)
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy: values from params files and -p
    for spec, value in ((s, overrides[s.name].value) for s in specs if s.name in overrides):
        coerced = coerce_override(spec, value)
        if coerced is not value:
            from rclpy.parameter import Parameter

            overrides[spec.name] = Parameter(spec.name, value=coerced)
    node.declare_parameters("", [(s.name, s.default, s.descriptor()) for s in specs])


def coerce_override(spec: Spec, value: Any) -> Any:
    """``value`` as the spec's type when that is lossless (int -> float), else ValueError (one line)."""
    kind = type(spec.default)
    if value is None or type(value) is kind:
        return value
    if kind is float and type(value) is int and abs(value) <= 2**53:
        return float(value)
    raise ValueError(f"parameter {spec.name} must be a {kind.__name__} (default {spec.default!r}), "
                     f"got {value!r} ({type(value).__name__}); fix it in the params file or -p")


def unknown_parameters(given: Iterable[str], specs: Iterable[Spec]) -> list[str]:
    """One warning per name in ``given`` that no spec declares, with the closest declared name."""
    import difflib

    declared = [s.name for s in specs]
    warnings = []
    for name in sorted(set(given) - set(declared) - set(ROS_OWN_PARAMETERS)):
        if name.startswith("qos_overrides."):
            continue
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see config/robot.yaml for the parameters"
        warnings.append(f"parameter {name} is not declared by this node and is ignored{hint}")
    return warnings


def warn_unknown(node, specs: Iterable[Spec]) -> list[str]:
    """Log (warning) every params-file / -p name ``node`` does not declare; returns the lines."""
    lines = unknown_parameters(getattr(node, "_parameter_overrides", {}), specs)
    for line in lines:
        node.get_logger().warning(line)
    return lines


def values(node, specs: Iterable[Spec]) -> dict[str, Any]:
    return {s.name: node.get_parameter(s.name).value for s in specs}


def check_value(spec: Spec, value: Any) -> str | None:
    """Reason ``value`` is not acceptable for ``spec``, else None (types and ranges ROS checks too)."""
    if isinstance(spec.default, bool) != isinstance(value, bool):
        return f"{spec.name} must be a {type(spec.default).__name__}, got {value!r}"
    if isinstance(spec.default, float) and isinstance(value, (int, float)) and not math.isfinite(value):
        return f"{spec.name} must be finite, got {value}"
    if spec.low is not None and isinstance(value, (int, float)) and not spec.low <= value <= spec.high:
        return f"{spec.name} must be in [{spec.low}, {spec.high}], got {value}"
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {list(spec.choices)}, got {value!r}"
    if spec.name == "device" and not DEVICE_RE.match(str(value)):
        return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
    if spec.name == "model_path" and not str(value).strip():
        return "model_path must not be empty"
    return None


def check_change(spec: Spec | None, value: Any, model_loaded: bool, state_label: str) -> str | None:
    """Reason a runtime parameter change is rejected, else None."""
    if spec is None:
        return None  # not ours (use_sim_time, ...)
    if spec.lifecycle and model_loaded:
        return (f"{spec.name} can only change while unconfigured (now {state_label}); "
                "deactivate and clean up the node, set it, then configure again")
    return check_value(spec, value)


def engine_config(p: dict[str, Any], model_path: str | None = None) -> EngineConfig:
    """EngineConfig from node parameter values (ValueError with reasons on cross-field problems)."""
    return EngineConfig.from_params(p, **({} if model_path is None else {"model_path": model_path}))


def to_yaml_dict(specs: Iterable[Spec]) -> dict[str, Any]:
    """Nested ``{name: value}`` of the defaults, dotted names as nested maps (how robot.yaml writes them)."""
    out: dict[str, Any] = {}
    for s in specs:
        node = out
        *parents, leaf = s.name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = s.default
    return out
