"""#42 in part: ``posedual_tf.predict_image`` takes an image as a numpy array (RGB, grey, RGBA), a PIL image, a
file path or encoded bytes, and gives the same keypoints for the same pixels; anything else is one line."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from posedual_tf import api, checkpoints, config
from posedual_tf.models import builder
from tests.conftest import EXPORT_SETS

BOXES = [[150.0, 60.0, 120.0, 260.0], [20.0, 30.0, 200.0, 300.0]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A SavedModel of randomly initialised networks: its keypoints follow the pixels (and their channel
    order), unlike a constant network's."""
    import keras

    keras.utils.set_random_seed(7)
    cfg = config.load("coco1k_dual", [*EXPORT_SETS, "test.flip_test=false"])
    folder = tmp_path_factory.mktemp("random")
    checkpoints.save_nets(builder.build_networks(cfg, policy="float32"), str(folder / "weights"))
    return api.export_saved_model(cfg, str(folder / "weights"), str(folder / "saved"), net="1")


@pytest.fixture(scope="module")
def rgb(shared):
    return cv2.imread(str(shared / "coco/000000196141.jpg"))[..., ::-1].copy()


def _keypoints(saved, image):
    out = api.predict_image(saved, image, BOXES)
    assert out["valid"].all()
    return out["keypoints"]


def test_every_kind_of_image_gives_the_keypoints_of_its_pixels(saved, rgb, shared, tmp_path):
    from PIL import Image

    png = tmp_path / "photo.png"
    assert cv2.imwrite(str(png), rgb[..., ::-1])                    # the test's own lossless copy (OpenCV: BGR)
    want = _keypoints(saved, png.read_bytes())
    for name, image in (("numpy RGB", rgb), ("path", str(png)), ("pathlib", png), ("PIL", Image.open(png)),
                        ("RGBA", np.dstack([rgb, np.random.default_rng(0).integers(0, 256, rgb.shape[:2], np.uint8)])),
                        ("bytearray", bytearray(png.read_bytes()))):
        np.testing.assert_allclose(_keypoints(saved, image), want, atol=1e-4, err_msg=name)
    # the channel order matters to these networks: BGR pixels are another image
    assert np.abs(_keypoints(saved, rgb[..., ::-1].copy())[..., :2] - want[..., :2]).max() > 0.5
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    grey_png = tmp_path / "grey.png"
    assert cv2.imwrite(str(grey_png), grey)
    want_grey = _keypoints(saved, grey_png.read_bytes())
    for image in (grey, grey[..., None], Image.open(grey_png)):
        np.testing.assert_allclose(_keypoints(saved, image), want_grey, atol=1e-4)
    # a JPEG decoded by OpenCV and by TensorFlow: pixels a grey level apart at most, keypoints within 0.5 px
    jpeg = shared / "coco/000000196141.jpg"
    got = _keypoints(saved, rgb)
    from_bytes = _keypoints(saved, jpeg.read_bytes())
    assert np.abs(got[..., :2] - from_bytes[..., :2]).max() <= 0.5


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((8, 8, 3), np.float32), ValueError,
     "image: expected uint8 pixels (0-255), got a float32 array; for floats in [0, 1]: (x * 255).round().astype(np.uint8)"),
    (np.zeros((8, 8, 3), np.int64), ValueError, "image: expected uint8 pixels (0-255), got a int64 array"),
    (np.zeros((8, 8, 2), np.uint8), ValueError,
     "image: expected H x W x 3 (RGB), H x W (grey) or H x W x 4 (RGBA) pixels, got shape (8, 8, 2)"),
    (np.zeros((2, 8, 8, 3), np.uint8), ValueError,
     "image: expected H x W x 3 (RGB), H x W (grey) or H x W x 4 (RGBA) pixels, got shape (2, 8, 8, 3)"),
    (np.zeros((0, 8, 3), np.uint8), ValueError,
     "image: expected H x W x 3 (RGB), H x W (grey) or H x W x 4 (RGBA) pixels, got shape (0, 8, 3)"),
    ([[0, 1], [2, 3]], TypeError, "image: expected a numpy array of uint8 pixels, a PIL image, a file path or the "
                                  "encoded bytes of a JPEG or PNG file, got builtins.list"),
    ("no/such/photo.jpg", ValueError, "image: no file at no/such/photo.jpg"),
    (b"\xff\xd8 not a jpeg", ValueError,
     "image: undecodable (truncated or damaged: TensorFlow's image decoder cannot read it)"),
])
def test_an_image_of_another_kind_is_one_line(image, error, message):
    with pytest.raises(error) as e:
        api.predict_image("no_model_needed", image, BOXES)
    assert str(e.value) == message
