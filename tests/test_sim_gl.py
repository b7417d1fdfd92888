"""The OpenGL platform for MuJoCo is chosen by the program on a headless machine (sim/gl.py)."""

import logging
import os
import subprocess
import sys

import pytest

from internvla_s2_node.sim import gl


def choose(env, egl=1, osmesa=True):
    return gl.choose_gl(env, egl=lambda: egl, osmesa=lambda: osmesa)


def test_users_setting_and_a_display_are_kept():
    env = {"MUJOCO_GL": "osmesa"}
    assert choose(env) == "osmesa" and env == {"MUJOCO_GL": "osmesa"}
    env = {"DISPLAY": ":0"}
    assert choose(env) == "glfw" and "MUJOCO_GL" not in env


def test_headless_prefers_egl_then_osmesa_and_logs_the_choice(caplog):
    with caplog.at_level(logging.INFO, logger=gl.__name__):
        env = {}
        assert choose(env, egl=1) == "egl"
        assert env == {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
        env = {}
        assert choose(env, egl=0) == "osmesa"
        assert env == {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    assert [r.getMessage().rsplit("=", 1)[1] for r in caplog.records] == ["egl", "osmesa"]


def test_pyopengl_platform_is_followed_because_mujoco_refuses_a_mismatch():
    env = {"PYOPENGL_PLATFORM": "osmesa"}
    assert choose(env, egl=1) == "osmesa" and env["MUJOCO_GL"] == "osmesa"


def test_no_platform_at_all_is_one_clear_error():
    with pytest.raises(gl.NoOpenGL, match="install libegl1 .* or set MUJOCO_GL"):
        choose({}, egl=0, osmesa=False)


def test_this_machine_has_a_headless_platform():
    assert gl.egl_device_count() > 0 or gl.osmesa_available()


def test_headless_render_without_mujoco_gl_set(tmp_path):
    """The issue's case: no scripts/env.sh, no display; the backend still renders and says how."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "from internvla_s2_node.sim.backend import SimConfig\n"
            "from internvla_s2_node.sim.mujoco_backend import BUNDLED_SCENES_DIR, MujocoBackend\n"
            "b = MujocoBackend(SimConfig(width=32, height=24)); b.load_scene(sorted(BUNDLED_SCENES_DIR.glob('*.json'))[0])\n"
            "obs = b.place((1.0, 1.0, 0.0), 0.0); print(obs.rgb.shape, int(obs.rgb.max()))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rendering with MUJOCO_GL=egl" in proc.stderr or "rendering with MUJOCO_GL=osmesa" in proc.stderr
    shape, peak = proc.stdout.strip().rsplit(" ", 1)
    assert shape == "(24, 32, 3)" and int(peak) > 0
