"""Pure message <-> numpy helpers (no DDS)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

pytest.importorskip("rclpy")

from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from internvla_s2_node.core import geometry  # noqa: E402
from internvla_s2_node.ros import conversions as conv  # noqa: E402
import ros_helpers as T  # noqa: E402

RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def padded(arr: np.ndarray, encoding: str, pad: int, bigendian: bool = False) -> Image:
    """An Image whose rows carry ``pad`` extra bytes (step > width * bytes per pixel)."""
    dtype = conv.ENCODINGS[encoding][1]
    a = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder(">" if bigendian else "<"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    data = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    return Image(height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=int(bigendian),
                 step=data.shape[1], data=data.tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_color_encodings_with_step_padding(encoding, pad):
    if encoding == "mono8":
        src, want = RGB[:, :, 0], np.repeat(RGB[:, :, :1], 3, axis=2)
    elif encoding.startswith("bgr"):
        src, want = RGB[:, :, ::-1], RGB
    else:
        src, want = RGB, RGB
    if encoding.endswith("a8"):
        src = np.concatenate([src, np.full(RGB.shape[:2] + (1,), 255, np.uint8)], axis=2)
    out = conv.image_to_rgb(padded(src, encoding, pad))
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_16uc1_millimetres_and_32fc1_metres(bigendian):
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    d = conv.image_to_depth(padded(mm, "16UC1", 2, bigendian))
    np.testing.assert_allclose(d, [[0.0, 1.0], [2.5, 65.535]], rtol=1e-6)
    m = np.array([[np.nan, 1.5], [np.inf, 3.0]], np.float32)
    d = conv.image_to_depth(padded(m, "32FC1", 4, bigendian))
    assert d.dtype == np.float32 and d[0, 1] == 1.5 and math.isnan(d[0, 0])  # REP 118 "no return" kept


@pytest.mark.parametrize("bigendian", [False, True])
def test_lazy_millimetre_depth_reads_the_metres_of_the_whole_conversion(bigendian):
    from internvla_s2_node.core.geometry import MillimetreDepth, project_pixel_goal

    mm = np.random.default_rng(0).integers(0, 8000, (48, 64), dtype=np.uint16)
    mm[10:30, 20:40] = 0  # no return around the goal pixel: the projection looks further out
    msg = padded(mm, "16UC1", 2, bigendian)
    eager, lazy = conv.image_to_depth(msg), conv.image_to_depth(msg, lazy=True)
    assert isinstance(lazy, MillimetreDepth) and lazy.shape == eager.shape and lazy.size == eager.size
    np.testing.assert_array_equal(np.asarray(lazy), eager)
    np.testing.assert_array_equal(lazy[5:9, 3:60], eager[5:9, 3:60])
    assert lazy[7, 11] == eager[7, 11] and lazy[7, 11].dtype == np.float32
    k = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    made = 0
    for pixel in ((30, 20), (5, 5), (63, 47), (29, 19)):
        a = project_pixel_goal(pixel, (64, 48), eager, k, np.eye(4), window=12)
        b = project_pixel_goal(pixel, (64, 48), lazy, k, np.eye(4), window=12)
        assert a.reason == b.reason
        if a.waypoint is not None:
            np.testing.assert_array_equal(a.waypoint.position, b.waypoint.position)
            assert a.waypoint.depth == b.waypoint.depth
            made += 1
    assert made >= 3
    with pytest.raises(conv.BadMessage, match="no finite positive"):
        conv.image_to_depth(padded(np.zeros((4, 5), np.uint16), "16UC1", 2, bigendian), lazy=True)
    m = np.full((4, 5), 1.5, np.float32)  # metres are converted as before
    assert isinstance(conv.image_to_depth(padded(m, "32FC1", 4, bigendian), lazy=True), np.ndarray)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "unsupported encoding"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), r"height\*step"),
        (lambda m: setattr(m, "data", b""), "empty"),
        (lambda m: setattr(m, "step", 2), "smaller than"),
        (lambda m: setattr(m, "width", 0), "no pixels"),
    ],
)
def test_bad_images_raise_with_reason(mutate, reason):
    msg = T.color_msg(1.0)
    mutate(msg)
    with pytest.raises(conv.BadMessage, match=reason):
        conv.image_to_rgb(msg)


def test_depth_all_invalid_and_color_as_depth_are_rejected():
    with pytest.raises(conv.BadMessage, match="no finite positive"):
        conv.image_to_depth(T.depth_msg(1.0, metres=float("nan")))
    with pytest.raises(conv.BadMessage, match="no finite positive"):
        conv.image_to_depth(T.depth_msg(1.0, metres=0.0, encoding="16UC1"))
    with pytest.raises(conv.BadMessage, match="unsupported encoding"):
        conv.image_to_depth(T.color_msg(1.0))


def test_compressed_images_via_pil():
    buf = io.BytesIO()
    PILImage.fromarray(RGB).save(buf, format="PNG")
    out = conv.compressed_to_rgb(CompressedImage(format="png", data=buf.getvalue()))
    np.testing.assert_array_equal(out, RGB)
    with pytest.raises(conv.BadMessage, match="empty"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg"))
    with pytest.raises(conv.BadMessage, match="cannot decode"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))


def test_round_trips_and_camera_info():
    for enc in ("32FC1", "16UC1"):
        d = np.full((3, 4), 1.25, np.float32)
        np.testing.assert_allclose(conv.image_to_depth(conv.depth_to_image(d, enc)), d, atol=1e-3)
    np.testing.assert_array_equal(conv.image_to_rgb(conv.rgb_to_image(RGB)), RGB)
    k = conv.camera_info_to_k(T.camera_info_msg(1.0, 64, 48))
    np.testing.assert_allclose(k, geometry.intrinsics_from_hfov(64, 48, 79.0))
    info = T.camera_info_msg(1.0)
    info.k = [0.0] * 9
    with pytest.raises(conv.BadMessage, match="focal"):
        conv.camera_info_to_k(info)
    k2 = conv.scale_intrinsics(k, (64, 48), (32, 24))
    assert k2[0, 0] == pytest.approx(k[0, 0] / 2) and k2[1, 2] == pytest.approx(k[1, 2] / 2)


def test_odometry_pose_and_stamps():
    t = conv.odometry_to_matrix(T.odom_msg(1.0, x=1.0, y=-2.0, yaw=0.7))
    np.testing.assert_allclose(t, geometry.planar_pose(1.0, -2.0, 0.7), atol=1e-12)
    r = geometry.rotation_rpy(0.3, -1.2, 2.9)
    for rot in (r, geometry.rotation_rpy(math.pi, 0, 0), geometry.rotation_rpy(0, 0, math.pi), np.eye(3)):
        m = geometry.transform(rot, (1, 2, 3))
        np.testing.assert_allclose(conv.pose_to_matrix(conv.matrix_to_pose(m)), m, atol=1e-9)
    bad = T.odom_msg(1.0)
    bad.pose.pose.orientation.w = 0.0
    with pytest.raises(conv.BadMessage):
        conv.odometry_to_matrix(bad)
    s = conv.float_to_stamp(1795561618.458838016)
    assert (s.sec, s.nanosec) == (1795561618, 458838016)
    assert conv.stamp_to_float(conv.float_to_stamp(12.999999999)) == pytest.approx(13.0)
    with pytest.raises(ValueError):
        conv.float_to_stamp(float("nan"))
