import numpy as np
import pytest

from internvla_s2_node.core.images import InvalidFrame, as_rgb, resize_rgb


def test_gray_and_rgba_convert():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = as_rgb(gray)
    assert out.shape == (3, 4, 3) and (out[..., 0] == gray).all() and (out[..., 2] == gray).all()
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., 0] = 7
    out = as_rgb(rgba)
    assert out.shape == (3, 4, 3) and (out[..., 0] == 7).all()


@pytest.mark.parametrize(
    "bad,msg",
    [
        (np.zeros((0, 0, 3), np.uint8), "too small"),
        (np.zeros((5, 5, 2), np.uint8), "shape"),
        (np.zeros((5, 5, 3), np.float32), "uint8"),
        (np.zeros((5,), np.uint8), "shape"),
        ("not an image", "numpy"),
    ],
)
def test_bad_frames(bad, msg):
    with pytest.raises(InvalidFrame, match=msg):
        as_rgb(bad)


def test_resize():
    img = resize_rgb(np.zeros((480, 640, 3), np.uint8), 384, 384)
    assert img.size == (384, 384)
