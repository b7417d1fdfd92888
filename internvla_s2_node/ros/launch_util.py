"""Plain-Python helpers for the launch files (no launch import, so they are testable anywhere)."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

TRUE_STRINGS = ("true", "1", "yes", "on")


def as_bool(text: str | bool) -> bool:
    return text if isinstance(text, bool) else str(text).strip().lower() in TRUE_STRINGS


def dds_env(profile: str, share_dir: str | pathlib.Path) -> dict[str, str]:
    """Environment of a process that uses the Fast DDS XML ``profile`` (relative: in the package's share dir)."""
    if not profile:
        return {}
    path = pathlib.Path(profile)
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(path if path.is_absolute() else pathlib.Path(share_dir) / path)}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted names of a nested parameter tree (``camera_extrinsic: {z: 1.25}`` -> ``camera_extrinsic.z``);
    the inverse of ``params.to_yaml_dict``."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _key_matches(key: str, node_name: str, namespace: str) -> bool:
    """Whether a params-file key addresses ``node_name`` (any namespace for plain and wildcard keys)."""
    key = key.strip()
    if key in ("/**", "**"):
        return True
    fqn = "/".join(p for p in (namespace.strip("/"), node_name) if p)
    return key.lstrip("/") in (node_name, fqn, f"**/{node_name}", f"*/{node_name}")


def node_parameters(params_file: str | pathlib.Path, node_name: str, namespace: str = "") -> dict[str, Any]:
    """Flat ``{name: value}`` the file gives ``node_name`` (``/**`` first, then the node's own keys).

    The launch files pass this dict instead of the file path so that a file keyed
    ``s2_node:`` also applies to a namespaced node.
    """
    text = pathlib.Path(params_file).expanduser().read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{params_file}: not a ROS parameters file")
    out: dict[str, Any] = {}
    for wildcard_pass in (True, False):
        for key, section in data.items():
            if _key_matches(str(key), node_name, namespace) and (str(key).strip() in ("/**", "**")) == wildcard_pass:
                out.update(flatten(_ros_parameters(section, params_file, key)))
    return out


def _ros_parameters(section: Any, params_file, key) -> dict:
    if not isinstance(section, dict) or not isinstance(section.get("ros__parameters", {}), dict):
        raise ValueError(f"{params_file}: section {key!r} has no ros__parameters mapping")
    return section.get("ros__parameters", {}) or {}
