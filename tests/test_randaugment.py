"""RandAugment and TrivialAugment against Pillow, the reference's image library, as the oracle.

Every op at every magnitude (RA) or level (TA), both enhancer signs, on real 256x192 crops, run as the
pipeline runs them (inside a ``tf.function``): no grey level may differ. The expected images come from
Pillow called as the references call it (reference lib/utils/rand_augment.py, MultiAugs
lib/utils/aug_lib.py), with the parameters computed here in Python, not by our code.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FakeRng
from posedual_tf.data import augment

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw, ImageEnhance, ImageOps  # noqa: E402

# (file, row, column) of each 256x192 crop (a low-contrast copy of the first is added)
CROPS = (("000000196141.jpg", 40, 100), ("000000000785.jpg", 100, 200), ("000000040083.jpg", 60, 150))


@pytest.fixture(scope="module")
def crops(shared):
    out = []
    for name, r, c in CROPS:
        img = cv2.imread(str(shared / "coco" / name))          # BGR, handed to PIL as the reference does
        crop = np.ascontiguousarray(img[r:r + 256, c:c + 192])
        assert crop.shape == (256, 192, 3)
        out.append(crop)
    # the first crop at low contrast (grey levels 40-167): AutoContrast stretches it, where real crops
    # that already span 0-255 leave it nothing to do
    out.append((out[0] // 2 + 40).astype(np.uint8))
    return out


def reference_ra(index: int, img: np.ndarray, m: int, sign: int) -> np.ndarray:
    """The reference's op ``index`` at magnitude ``m``, the enhancer sign ``sign`` (+1 / -1)."""
    pil = Image.fromarray(img)
    lo, hi = [(0, 1), (0, 1), (0, 1), (0, 4), (0, 256), (0, 110), (0, 0.9), (0, 0.9), (0, 0.9), (0, 0.9),
              (0, 80)][index]
    val = (float(m) / 30) * float(hi - lo) + lo
    enhancers = {6: ImageEnhance.Color, 7: ImageEnhance.Contrast, 8: ImageEnhance.Brightness,
                 9: ImageEnhance.Sharpness}
    if index == 0:
        out = ImageOps.autocontrast(pil)
    elif index == 1:
        out = ImageOps.equalize(pil)
    elif index == 2:
        out = ImageOps.invert(pil)
    elif index == 3:
        out = ImageOps.posterize(pil, max(2, 6 - int(val)))
    elif index == 4:
        out = ImageOps.solarize(pil, 256 - val)
    elif index == 5:
        added = np.clip(img.astype(np.int64) + val, 0, 255).astype(np.uint8)
        out = ImageOps.solarize(Image.fromarray(added), 128)
    else:
        out = enhancers[index](pil).enhance(1 + sign * val)
    return np.asarray(out)


def _reference_ta(index: int, img: np.ndarray, level: int) -> np.ndarray:
    pil = Image.fromarray(img)
    factor = float(level) * (1.9 - 0.1) / 30 + 0.1
    ops = [lambda: pil, lambda: ImageOps.autocontrast(pil), lambda: ImageOps.equalize(pil),
           lambda: ImageOps.solarize(pil, 256 - int(level * 256 / 30)),
           lambda: ImageEnhance.Color(pil).enhance(factor),
           lambda: ImageOps.posterize(pil, 4 - int(level * 4 / 30) + 4),
           lambda: ImageEnhance.Contrast(pil).enhance(factor),
           lambda: ImageEnhance.Brightness(pil).enhance(factor),
           lambda: ImageEnhance.Sharpness(pil).enhance(factor)]
    return np.asarray(ops[index]())


@tf.function
def _ra(op, img, negative, magnitude):
    return augment.rand_augment_op(op, img, magnitude, negative, augment.StatelessRng([0, 0]))


@tf.function
def _ta(op, level, img):
    return augment.trivial_augment_op(op, level, img)


def _mismatch(ours, want, what):
    diff = np.abs(ours.astype(np.int64) - want.astype(np.int64))
    return None if diff.max() == 0 else f"{what}: {int((diff > 0).sum())} values differ, up to {diff.max()} levels"


def test_every_rand_augment_op_magnitude_and_sign_equals_pillow(crops):
    """All 10 deterministic ops x magnitudes 0-30 x both signs (CutoutAbs: the next test)."""
    bad = []
    for crop in crops:
        img = tf.constant(crop, tf.float32)
        for index in range(10):
            signs = (1, -1) if index >= 6 else (1,)
            for m in range(31):
                for sign in signs:
                    ours = _ra(tf.constant(index), img, tf.constant(sign < 0), m).numpy()
                    msg = _mismatch(ours, reference_ra(index, crop, m, sign),
                                    f"{augment.RAND_AUG_OPS[index]} m={m} sign={sign}")
                    if msg:
                        bad.append(msg)
    assert not bad, f"{len(bad)} cases differ from Pillow, e.g. " + "; ".join(bad[:6])


def test_every_trivial_augment_op_and_level_equals_pillow(crops):
    bad = []
    for crop in crops:
        img = tf.constant(crop, tf.float32)
        for index in range(len(augment.TRIVIAL_AUG_OPS)):
            for level in range(31):
                ours = _ta(tf.constant(index), tf.constant(level), img).numpy()
                msg = _mismatch(ours, _reference_ta(index, crop, level),
                                f"{augment.TRIVIAL_AUG_OPS[index]} level={level}")
                if msg:
                    bad.append(msg)
    assert not bad, f"{len(bad)} cases differ from Pillow, e.g. " + "; ".join(bad[:6])


def test_cutout_abs_equals_pillow_rectangle_at_injected_centres(crops):
    """CutoutAbs with its two centre draws injected, every magnitude, centres inside and at the edges."""
    crop = crops[0]
    h, w = crop.shape[:2]
    for m in range(0, 31, 3):
        size = (float(m) / 30) * 80.0
        for ux, uy in ((0.0, 0.0), (0.37, 0.81), (1.0, 1.0), (0.999, 0.02)):
            cx, cy = 1.0 + ux * (w - 1), 1.0 + uy * (h - 1)      # np.random.uniform(w): a centre in (1, w]
            rng = FakeRng(np.int32(10), np.float32(0.9), np.float32(ux), np.float32(uy))
            ours = augment.rand_augment(tf.constant(crop, tf.float32), rng, num_ops=1, magnitude=m).numpy()
            pil = Image.fromarray(crop)
            x0, y0 = int(max(0, cx - size / 2.0)), int(max(0, cy - size / 2.0))
            ImageDraw.Draw(pil).rectangle((x0, y0, min(w, x0 + size), min(h, y0 + size)), (125, 123, 114))
            assert _mismatch(ours, np.asarray(pil), f"m={m} centre=({cx}, {cy})") is None


def test_rand_augment_draws_choose_the_op_and_the_sign():
    """Through the sampler: op index, then the sign draw (u < 0.5 is 1 - v), as the reference's choices."""
    rng = np.random.default_rng(3)
    crop = rng.integers(0, 256, (32, 24, 3)).astype(np.uint8)
    img = tf.constant(crop, tf.float32)
    for op, u, sign in ((8, 0.2, -1), (8, 0.7, 1), (6, 0.49, -1), (9, 0.51, 1)):
        ours = augment.rand_augment(img, FakeRng(np.int32(op), np.float32(u)), num_ops=1, magnitude=17).numpy()
        np.testing.assert_array_equal(ours, reference_ra(op, crop, 17, sign))
    ours = augment.trivial_augment(img, FakeRng(np.int32(7), np.int32(11))).numpy()
    np.testing.assert_array_equal(ours, _reference_ta(7, crop, 11))
