"""Which OpenGL platform MuJoCo renders with, chosen before ``mujoco`` is first imported.

MuJoCo reads ``MUJOCO_GL`` once, at import. Without it and without a display it falls back to
GLFW and fails on the first render ("an OpenGL platform library has not been loaded"), which is
what a headless evaluation server hits. So, when ``MUJOCO_GL`` is unset and there is no display,
this module picks EGL when an EGL device is present, else OSMesa (software), and logs the choice.
A user's own ``MUJOCO_GL`` is always kept.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, MutableMapping

log = logging.getLogger(__name__)

OSMESA_LIBRARIES = ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")


class NoOpenGL(RuntimeError):
    """No display and neither EGL nor OSMesa can be loaded."""


def egl_device_count() -> int:
    """EGL devices that ``eglQueryDevicesEXT`` reports (what mujoco.egl renders on); 0 if none or no libEGL."""
    try:
        lib = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return 0
    get_proc = lib.eglGetProcAddress
    get_proc.restype, get_proc.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    address = get_proc(b"eglQueryDevicesEXT")
    if not address:
        return 0
    query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))(address)
    count = ctypes.c_int(0)
    return count.value if query(0, None, ctypes.byref(count)) else 0


def osmesa_available() -> bool:
    for name in OSMESA_LIBRARIES:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def choose_gl(environ: MutableMapping[str, str] | None = None, egl: Callable[[], int] = egl_device_count,
              osmesa: Callable[[], bool] = osmesa_available) -> str:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) in ``environ`` if needed; return the platform used.

    Returns the user's ``MUJOCO_GL`` when set, ``"glfw"`` when a display is present, else the user's
    ``PYOPENGL_PLATFORM`` when it is egl or osmesa, else ``"egl"`` or ``"osmesa"``. Raises NoOpenGL when there is no display and neither can be loaded.
    """
    env = os.environ if environ is None else environ
    if env.get("MUJOCO_GL"):
        return env["MUJOCO_GL"]
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return "glfw"
    if env.get("PYOPENGL_PLATFORM") in ("egl", "osmesa"):  # mujoco.egl/osmesa refuse any other value
        chosen = env["PYOPENGL_PLATFORM"]
    elif egl() > 0:
        chosen = "egl"
    elif osmesa():
        chosen = "osmesa"
    else:
        raise NoOpenGL("no display, no EGL device and no OSMesa library for rendering; "
                       "install libegl1 (GPU) or libosmesa6 (CPU), or set MUJOCO_GL")
    env["MUJOCO_GL"] = chosen
    env.setdefault("PYOPENGL_PLATFORM", chosen)
    log.info("MUJOCO_GL was unset and there is no display: rendering with MUJOCO_GL=%s", chosen)
    return chosen


def import_mujoco():
    """``import mujoco`` after choosing its OpenGL platform (see the module docstring)."""
    import sys

    if "mujoco" not in sys.modules:
        choose_gl()
    import mujoco

    return mujoco
