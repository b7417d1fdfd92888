"""ROS domain ids for the tests: one base (``ROS_DOMAIN_ID``, or ``DEFAULT_BASE`` when unset) plus a
small per-test offset, so a user or a CI job can move every test off a domain another user is on.

Every offset is listed here, so two test modules never share a domain by accident. Linux keeps
domain ids 0..101 safe with the default DDS port mapping (ROS 2 docs, "The ROS_DOMAIN_ID"), so the
base must leave room for the largest offset.
"""

from __future__ import annotations

import os

DEFAULT_BASE = 80
MAX_OFFSET = 21
MAX_DOMAIN_ID = 101

OFFSETS = {
    "default": 0,  # rclpy.init without domain_id: the base itself
    "ros_node": 1,
    "ros_s2_process": 2,
    "ros_executor": 3,
    "ros_submit_once_executor": 4,
    "ros_bringup_process": 5,
    "sim_bridge": 6,
    "sim_bridge_forward": 7,
    "sim_bridge_stop": 8,
    "fuzz_messages_in_process": 9,
    "fuzz_messages_process": 10,
    "faults_checkpoint": 11,
    "faults_eval_kill": 12,
    "faults_step": 13,
    "soak_short": 14,
    "fuzz_security_node": 15,
    "fuzz_security_bridge": 16,
    "bridge_fail_fast": 17,
    "ros_params_file": 18,
    "launch_pytest": 19,
    "launch_cli": 20,
    "engine_policy": 21,
}


def base() -> int:
    raw = os.environ.get("ROS_DOMAIN_ID", "") or str(DEFAULT_BASE)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID={raw!r} is not an integer; set it to 0..{MAX_DOMAIN_ID - MAX_OFFSET}") from None
    if not 0 <= value <= MAX_DOMAIN_ID - MAX_OFFSET:
        raise ValueError(f"ROS_DOMAIN_ID={value} leaves no room for the tests' offsets 0..{MAX_OFFSET}; "
                         f"set it to 0..{MAX_DOMAIN_ID - MAX_OFFSET}")
    return value


def domain(name: str) -> int:
    """The domain id of the test user ``name`` (a key of OFFSETS)."""
    return base() + OFFSETS[name]
