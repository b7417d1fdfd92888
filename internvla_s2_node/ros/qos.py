"""QoS profiles used by the package (Humble-compatible constructors only)."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)


def sensor_qos() -> QoSProfile:
    """Camera, depth, camera info and odometry: best effort, keep last 5 (``qos_profile_sensor_data``)."""
    return qos_profile_sensor_data


def sim_frames_qos(depth: int = 10) -> QoSProfile:
    """Frames of the simulated robot (sim_bridge -> s2_node with ``decision_mode: on_request``): reliable,
    so DDS resends what it lost. Best effort, 640x480 frames between processes were lost (issue 17)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """Instruction: reliable + transient local, so a node that starts later still gets the last one."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Outputs (waypoint, actions, raw output, diagnostics): reliable, volatile."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def incompatible_qos_hint(logger, topic: str, hint: str):
    """Subscription event callbacks that log ``hint`` when a publisher's QoS cannot match (None if unsupported)."""
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:  # Humble
        try:
            from rclpy.qos_event import SubscriptionEventCallbacks
        except ImportError:
            return None

    def on_incompatible(info) -> None:
        logger.warn(f"a publisher on '{topic}' has incompatible QoS and is ignored: {hint}")

    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
