import math

import numpy as np
import pytest

from internvla_s2_node.core import geometry as g


def test_intrinsics_from_hfov_79deg():
    k = g.intrinsics_from_hfov(640, 480, 79.0)
    assert k[0, 0] == pytest.approx(320 / math.tan(math.radians(39.5)))
    assert k[0, 2] == pytest.approx(319.5) and k[1, 2] == pytest.approx(239.5)


def test_optical_axes():
    t = g.camera_extrinsic(0, 0, 0, 0, 0, 0)
    # optical z (forward) is body x, optical x (right) is body -y, optical y (down) is body -z
    np.testing.assert_allclose(t[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(t[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(t[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-12)


def test_projection_hand_computed_identity_pose():
    k = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    depth = np.full((80, 100), 2.0, np.float32)
    t_odom_opt = g.camera_extrinsic(0, 0, 1.0, 0, 0, 0)
    res = g.project_pixel_goal((75, 40), (100, 80), depth, k, t_odom_opt)
    # optical: x = (75-50)*2/100 = 0.5 right, y = 0, z = 2 -> body: x 2, y -0.5, z 1
    np.testing.assert_allclose(res.waypoint.position, [2.0, -0.5, 1.0], atol=1e-9)
    assert res.waypoint.yaw == pytest.approx(math.atan2(-0.5, 2.0))


def test_projection_with_robot_pose_pitch_and_scaling():
    k = g.intrinsics_from_hfov(640, 480, 90.0)  # f = 320
    depth = np.full((480, 640), 3.0, np.float32)
    pitch = math.radians(30)  # camera tilted down
    t_base_opt = g.camera_extrinsic(0.1, 0.0, 1.0, 0.0, pitch, 0.0)
    t_odom_base = g.planar_pose(5.0, -2.0, math.pi / 2)
    # pixel at the principal point of a 384x384 model image maps to the depth image centre
    res = g.project_pixel_goal((192, 192), (384, 384), depth, k, t_odom_base @ t_base_opt)
    u = round(192 * 640 / 384)
    v = round(192 * 480 / 384)
    p_opt = g.pixel_to_camera(u, v, 3.0, k)
    expected = (t_odom_base @ t_base_opt @ np.append(p_opt, 1))[:3]
    np.testing.assert_allclose(res.waypoint.position, expected, atol=1e-9)
    # near the optical axis: about 3 m along a ray 30 deg below horizontal, facing +y in odom
    assert res.waypoint.position[1] == pytest.approx(-2.0 + 0.1 + 3 * math.cos(pitch), abs=0.02)
    assert res.waypoint.position[2] == pytest.approx(1.0 - 3 * math.sin(pitch), abs=0.02)


def test_invalid_depth_nearest_valid_then_reason():
    k = np.array([[100.0, 0, 5], [0, 100.0, 5], [0, 0, 1]])
    depth = np.full((11, 11), np.nan, np.float32)
    depth[5, 8] = 4.0
    depth[5, 9] = 1.0
    t = g.camera_extrinsic(0, 0, 0, 0, 0, 0)
    res = g.project_pixel_goal((5, 5), (11, 11), depth, k, t, window=5)
    assert res.waypoint is not None and res.waypoint.depth == 4.0  # nearest valid, not the closest range
    depth[:] = 0.0
    res = g.project_pixel_goal((5, 5), (11, 11), depth, k, t)
    assert res.waypoint is None and "no valid depth" in res.reason
    depth[:] = np.inf
    assert g.project_pixel_goal((5, 5), (11, 11), depth, k, t).waypoint is None
    depth[:] = 50.0  # beyond max range
    assert g.project_pixel_goal((5, 5), (11, 11), depth, k, t, max_depth=10).waypoint is None


def test_missing_inputs_give_reasons():
    depth = np.ones((4, 4), np.float32)
    k = np.array([[1.0, 0, 2], [0, 1.0, 2], [0, 0, 1]])
    t = np.eye(4)
    assert "depth" in g.project_pixel_goal((1, 1), (4, 4), None, k, t).reason
    assert "intrinsics" in g.project_pixel_goal((1, 1), (4, 4), depth, np.zeros((3, 3)), t).reason
    assert "pose" in g.project_pixel_goal((1, 1), (4, 4), depth, k, None).reason


def test_quaternion_roundtrip():
    q = g.yaw_to_quaternion(0.7)
    m = g.quaternion_to_matrix(*q)
    t = g.transform(m, (0, 0, 0))
    assert g.yaw_of(t) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        g.quaternion_to_matrix(0, 0, 0, 0)
