"""Augmentations (pure TF): the batch affine and the image-level policies of the hard view.

* :func:`batch_affine_theta` / :func:`affine_grid_warp`: the reference ``UNSUP_TRANSFORM``
  (``getRotationMatrix2D`` theta used with ``affine_grid`` + ``grid_sample``, bilinear, zero
  padding), applied identically to the hard images and to the teacher heatmaps.
* :func:`rand_augment`: the reference's 11 colour ops on a uint8 crop (RA).
* :func:`trivial_augment` (TA) and :func:`yoco` (YOCO): MultiAugs' other image-level policies.

The batch primitives (joint cutout, JO, CO, CM, MU) live in :mod:`posedual_tf.data.hard_views`.

All randomness comes from a ``tf.random.Generator`` passed in, so a train step is reproducible
and its RNG state is checkpointed with the model.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from posedual_tf import geometry


class StatelessRng:
    """A ``tf.random.Generator``-like source of stateless draws from one ``[2]`` seed.

    Each call folds a Python counter into the seed, so a traced function makes a fixed,
    reproducible sequence of draws per seed (what a tf.data map needs).
    """

    def __init__(self, seed):
        self.seed = tf.cast(seed, tf.int64)
        self.count = 0

    #: Philox named, not "auto_select": XLA would select ThreeFry, so a step compiled with XLA would draw
    #: other hard views than the same step without it (Philox is what auto_select gives on CPU and GPU)
    ALG = "philox"

    def _next(self):
        self.count += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.count, alg=self.ALG)

    # Floats are made here from the generator's 32-bit words, as TensorFlow's CPU and GPU kernels make them:
    # XLA compiles StatelessRandomUniformV2 and StatelessRandomNormalV2 into other float conversions
    # (the words agree, the floats do not: measured in TF 2.21 with a seed computed at run time), so a
    # step compiled with XLA would draw other hard views than the same step without it.

    def _words(self, count):
        """``count`` (a scalar) uint32 words of the next draw: the same under XLA and without it."""
        return tf.random.stateless_uniform(tf.reshape(count, [1]), self._next(), None, None, tf.uint32, alg=self.ALG)

    @staticmethod
    def _unit(words):
        """Uniform [0, 1) floats from uint32 words: the low 23 bits as the mantissa of [1, 2), minus 1
        (TensorFlow's ``Uint32ToFloat``)."""
        mantissa = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(words, 0x7FFFFF), 0x3F800000)
        return tf.bitcast(mantissa, tf.float32) - 1.0

    def uniform(self, shape, minval=0, maxval=None, dtype=tf.float32):
        if not dtype.is_floating:
            return tf.random.stateless_uniform(shape, self._next(), minval, maxval, dtype, alg=self.ALG)
        if dtype != tf.float32:
            raise ValueError(f"StatelessRng.uniform: float32 draws only, not {dtype.name}")
        shape = tf.cast(shape, tf.int32)
        unit = tf.reshape(self._unit(self._words(tf.reduce_prod(shape))), shape)
        return unit * (1.0 if maxval is None else maxval - minval) + minval

    def normal(self, shape):
        """Standard normal float32 draws: Box-Muller on word pairs, as TensorFlow's kernels (the
        first of a pair ``r sin(2 pi u2)``, the second ``r cos(2 pi u2)``, ``r = sqrt(-2 log max(u1, 1e-7))``)."""
        shape = tf.cast(shape, tf.int32)
        n = tf.reduce_prod(shape)
        unit = tf.reshape(self._unit(self._words(2 * ((n + 1) // 2))), [-1, 2])
        radius = tf.sqrt(-2.0 * tf.math.log(tf.maximum(unit[:, 0], 1e-7)))
        angle = 2.0 * math.pi * unit[:, 1]
        pairs = tf.stack([tf.sin(angle) * radius, tf.cos(angle) * radius], axis=1)
        return tf.reshape(tf.reshape(pairs, [-1])[:n], shape)

    def gamma(self, shape, alpha: float, candidates: int = 8):
        """Gamma(``alpha``, 1) draws from uniform and normal ones, so that XLA compiles them (TF 2.21 has
        no XLA kernel for ``StatelessRandomGammaV3``): Marsaglia and Tsang's method (2000) with
        ``candidates`` proposals per draw, the first accepted one kept (each is accepted with probability
        above 0.95 for alpha >= 1, so all 8 fail about once in 1e10 draws; the last is kept then), and
        ``Gamma(a) = Gamma(a + 1) * U^(1/a)`` for alpha < 1."""
        a = float(alpha)
        d = (a + 1.0 if a < 1.0 else a) - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        full = tf.concat([tf.reshape(tf.cast(shape, tf.int32), [-1]), [candidates]], 0)
        x, u = self.normal(full), self.uniform(full)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (tf.math.log(u) < 0.5 * x * x + d - d * v + d * tf.math.log(tf.maximum(v, 1e-30)))
        ok = ok | (tf.range(candidates) == candidates - 1)
        first = tf.argmax(tf.cast(ok, tf.int32), axis=-1, output_type=tf.int32)
        g = d * tf.gather(v, first, batch_dims=len(v.shape) - 1)
        if a < 1.0:
            g = g * tf.exp(tf.math.log(self.uniform(tf.shape(g))) / a)
        return g


# ------------------------------------------------------------------------------ batch affine

def batch_affine_theta(gen: tf.random.Generator, batch_size, scale_factor: float = 0.25,
                       rot_factor: float = 30.0, rot_prob: float = 0.8):
    """Per-sample ``[B, 2, 3]`` theta = getRotationMatrix2D((0, 0), r, s) (reference lib/models/pose_dual.py: ``PoseCotrain.get_batch_affine_transform``)."""
    s = tf.clip_by_value(gen.normal([batch_size]) * scale_factor + 1.0, 1 - scale_factor, 1 + scale_factor)
    r = tf.clip_by_value(gen.normal([batch_size]) * rot_factor, -2 * rot_factor, 2 * rot_factor)
    r = tf.where(gen.uniform([batch_size]) <= rot_prob, r, 0.0)
    t = r * (math.pi / 180.0)
    c, sn, z = s * tf.cos(t), s * tf.sin(t), tf.zeros_like(s)
    return tf.stack([tf.stack([c, sn, z], -1), tf.stack([-sn, c, z], -1)], axis=-2)


def _theta3(theta):
    theta = tf.convert_to_tensor(theta, tf.float32)
    bottom = tf.broadcast_to(tf.constant([[0.0, 0.0, 1.0]]), [tf.shape(theta)[0], 1, 3])
    return tf.concat([theta, bottom], axis=1)


def compose_theta(a, b):
    """The theta of ``affine_grid_warp(x, a)`` then warped by ``b``: sampling at ``a @ b`` (``[B, 2, 3]``)."""
    return (_theta3(a) @ _theta3(b))[:, :2]


def invert_theta(theta):
    """The theta that undoes a warp by ``theta`` (where both frames overlap): ``[B, 2, 3]``."""
    return tf.linalg.inv(_theta3(theta))[:, :2]


def theta_to_pixel_map(theta, size: Sequence[int], align_corners: bool = False):
    """``affine_grid`` theta ``[B, 2, 3]`` -> pixel-space output->input affine for ``size [W, H]``."""
    w, h = float(size[0]), float(size[1])
    if align_corners:
        n = np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
        p = np.array([[(w - 1) / 2, 0, (w - 1) / 2], [0, (h - 1) / 2, (h - 1) / 2]])
    else:
        n = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
        p = np.array([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2]])
    return tf.constant(p, tf.float32)[None] @ _theta3(theta) @ tf.constant(n, tf.float32)[None]


def affine_grid_warp(images, theta, align_corners: bool = False):
    """``grid_sample(images, affine_grid(theta))`` for channels-last ``[B, H, W, C]``, zero padding.

    Written with gathers (:func:`~posedual_tf.geometry.tf_gather_warp`), so a train step that warps its
    hard views compiles under XLA."""
    images = tf.convert_to_tensor(images)
    size = (int(images.shape[2]), int(images.shape[1]))
    inv = theta_to_pixel_map(theta, size, align_corners)
    out = geometry.tf_gather_warp(images, inv, size, fill_value=0.0)
    return tf.cast(out, images.dtype)


# ------------------------------------------------------------------------------ RandAugment

# The colour ops equal Pillow's on uint8 values (tests/test_randaugment.py checks every op and level against
# Pillow): float32 where Pillow's C code computes in float, float64 where the reference computes in Python.

RAND_AUG_OPS = ("AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd",
                "Color", "Contrast", "Brightness", "Sharpness", "CutoutAbs")
CUTOUT_FILL = (125.0, 123.0, 114.0)
#: Pillow's SMOOTH kernel weights after its float32 division by 13 (ImageFilter.SMOOTH).
_SMOOTH_SIDE = np.float32(1.0) / np.float32(13.0)
_SMOOTH_CENTRE = np.float32(5.0) / np.float32(13.0)


def _blend(degenerate, img, factor):
    """Pillow's ``Image.blend(degenerate, img, factor)`` (what ``ImageEnhance`` does): float32
    ``degenerate + factor * (img - degenerate)``, clipped to [0, 255] and truncated. ``factor`` is
    the enhancer's double rounded to float32, as Pillow passes it to C."""
    f = tf.cast(factor, tf.float32)
    return tf.floor(tf.clip_by_value(degenerate + f * (img - degenerate), 0.0, 255.0))


def _grey(img):
    """Pillow's ``convert("L")``: ITU-R 601-2 luma in 16-bit fixed point, ``[H, W, 1]``."""
    i = tf.cast(img, tf.int32)
    luma = i[..., 0] * 19595 + i[..., 1] * 38470 + i[..., 2] * 7471 + 0x8000
    return tf.cast(tf.bitwise.right_shift(luma, 16), tf.float32)[..., None]


def _grey_mean(img):
    """``int(ImageStat.Stat(L).mean + 0.5)``: the rounded mean grey level (exact sum, divided in float64)."""
    g = tf.cast(_grey(img), tf.int64)
    mean = tf.cast(tf.reduce_sum(g), tf.float64) / tf.cast(tf.size(g), tf.float64)
    return tf.cast(tf.floor(mean + 0.5), tf.float32)


def _autocontrast(img):
    """``ImageOps.autocontrast`` (no cutoff): per channel ``int(v * scale + offset)`` in float64 with
    ``scale = 255 / (hi - lo)``, ``offset = -lo * scale``; a flat channel is unchanged."""
    x = tf.cast(img, tf.float64)
    lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(x, axis=[0, 1], keepdims=True)
    scale = tf.math.divide_no_nan(tf.constant(255.0, tf.float64), hi - lo)
    out = tf.clip_by_value(tf.floor(x * scale + (-lo * scale)), 0.0, 255.0)
    return tf.cast(tf.where(hi > lo, out, x), tf.float32)


def _equalize_channel(ch):
    """PIL ImageOps.equalize for one uint8-valued channel."""
    ch_i = tf.cast(ch, tf.int32)
    hist = tf.math.bincount(tf.reshape(ch_i, [-1]), minlength=256, maxlength=256)
    nonzero = tf.boolean_mask(hist, hist > 0)
    step = (tf.reduce_sum(hist) - nonzero[-1]) // 255

    def apply():
        lut = (tf.cumsum(hist, exclusive=True) + step // 2) // step
        lut = tf.clip_by_value(lut, 0, 255)
        return tf.cast(tf.gather(lut, ch_i), tf.float32)

    return tf.cond(step > 0, apply, lambda: ch)


def _equalize(img):
    return tf.stack([_equalize_channel(img[..., c]) for c in range(3)], axis=-1)


def _posterize(img, bits):
    shift = 8 - bits
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(tf.cast(img, tf.int32), shift), shift), tf.float32)


def _solarize(img, threshold):
    return tf.where(img >= threshold, 255.0 - img, img)


def _solarize_add(img, addition: float, threshold: float = 128.0):
    """The reference's SolarizeAdd: ``uint8(clip(img + addition, 0, 255))`` in float64, then Solarize."""
    added = tf.clip_by_value(tf.cast(img, tf.float64) + addition, 0.0, 255.0)
    return _solarize(tf.cast(tf.floor(added), tf.float32), threshold)


def _smooth(img):
    """Pillow's ``filter(ImageFilter.SMOOTH)`` on uint8 values: the float32 sum in Pillow's order (0.5,
    then the rows below, at and above the pixel, each left to right), truncated; the border is copied."""
    def row(r, centre):
        a, b, c = r[:, :-2], r[:, 1:-1], r[:, 2:]
        return a * _SMOOTH_SIDE + b * centre + c * _SMOOTH_SIDE

    ss = 0.5 + row(img[2:], _SMOOTH_SIDE)
    ss = ss + row(img[1:-1], _SMOOTH_CENTRE)
    ss = ss + row(img[:-2], _SMOOTH_SIDE)
    inner = tf.pad(tf.floor(tf.clip_by_value(ss, 0.0, 255.0)), [[1, 1], [1, 1], [0, 0]])
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    border = tf.pad(tf.ones([h - 2, w - 2, 1]), [[1, 1], [1, 1], [0, 0]])
    return tf.where(border > 0, inner, img)


def enhance(kind: str, img, factor):
    """``ImageEnhance.<kind>(img).enhance(factor)`` for Color, Contrast, Brightness, Sharpness."""
    degenerate = {"Color": lambda: _grey(img) + tf.zeros_like(img),
                  "Contrast": lambda: _grey_mean(img) + tf.zeros_like(img),
                  "Brightness": lambda: tf.zeros_like(img),
                  "Sharpness": lambda: _smooth(img)}[kind]()
    return _blend(degenerate, img, factor)


def _cutout_abs(img, size, gen):
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    # The reference calls np.random.uniform(w), i.e. uniform(low=w, high=1): a centre in (1, w].
    cx = 1.0 + gen.uniform([]) * tf.cast(w - 1, tf.float32)
    cy = 1.0 + gen.uniform([]) * tf.cast(h - 1, tf.float32)
    return cutout_box(img, size, cx, cy)


def cutout_box(img, size: float, cx, cy):
    """The reference's CutoutAbs around centre (cx, cy): ``ImageDraw.rectangle`` (corners included,
    truncated to integers) filled with (125, 123, 114)."""
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    x0 = tf.cast(tf.maximum(0.0, cx - size / 2.0), tf.int32)
    y0 = tf.cast(tf.maximum(0.0, cy - size / 2.0), tf.int32)
    x1 = tf.minimum(w, x0 + int(size))
    y1 = tf.minimum(h, y0 + int(size))
    cols, rows = tf.range(w), tf.range(h)
    box = ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]
    return tf.where(box[..., None], tf.constant(CUTOUT_FILL, tf.float32), img)


def rand_augment_op(op, img, magnitude: int, negative, gen):
    """RandAugment op number ``op`` (of :data:`RAND_AUG_OPS`) at ``magnitude`` (0-30) on ``img``; the
    enhancers take ``1 - v`` where ``negative`` is true, else ``1 + v`` (the reference's
    ``random.choice([-1, 1])``). Parameters are computed in Python doubles as the reference computes
    them (reference lib/utils/rand_augment.py: ``RandAugment.__call__`` and its op functions)."""
    def level(lo, hi):
        return (float(magnitude) / 30) * float(hi - lo) + lo

    v = level(0, 0.9)
    fac = tf.where(negative, tf.constant(1 - v, tf.float32), tf.constant(1 + v, tf.float32))
    branches = [
        lambda: _autocontrast(img),
        lambda: _equalize(img),
        lambda: 255.0 - img,
        lambda: _posterize(img, max(2, 6 - int(level(0, 4)))),
        lambda: _solarize(img, 256 - level(0, 256)),
        lambda: _solarize_add(img, level(0, 110)),
        lambda: enhance("Color", img, fac),
        lambda: enhance("Contrast", img, fac),
        lambda: enhance("Brightness", img, fac),
        lambda: enhance("Sharpness", img, fac),
        lambda: _cutout_abs(img, level(0, 80), gen),
    ]
    out = tf.switch_case(op, branches)
    out.set_shape([None, None, 3])
    return out


def rand_augment(img, gen: tf.random.Generator, num_ops: int = 2, magnitude: int = 10):
    """RandAugment of one ``[H, W, 3]`` uint8-valued float crop (reference lib/utils/rand_augment.py: ``RandAugment``)."""
    img = tf.convert_to_tensor(img, tf.float32)
    for _ in range(num_ops):
        op = gen.uniform([], 0, len(RAND_AUG_OPS), dtype=tf.int32)
        negative = gen.uniform([]) < 0.5
        img = rand_augment_op(op, img, magnitude, negative, gen)
    return img


# ------------------------------------------------------------------------------ TrivialAugment, YOCO

TRIVIAL_AUG_OPS = ("Identity", "AutoContrast", "Equalize", "Solarize", "Color", "Posterize", "Contrast",
                   "Brightness", "Sharpness")


def trivial_augment_op(op, level, img, max_level: int = 30):
    """TrivialAugment op number ``op`` (of :data:`TRIVIAL_AUG_OPS`) at ``level`` (0 to ``max_level``).

    Solarize threshold 256 - floor(256 l / 30), posterize bits 8 - floor(4 l / 30), enhancer factor
    ``float(l) * (1.9 - 0.1) / 30 + 0.1`` in doubles, one per level, rounded to float32 as Pillow takes it
    (MultiAugs lib/utils/aug_lib.py: ``float_parameter``, ``int_parameter``, ``_enhancer_impl``).
    """
    factors = tf.constant([float(lv) * (1.9 - 0.1) / max_level + 0.1 for lv in range(max_level + 1)], tf.float32)
    fac = tf.gather(factors, level)
    threshold = tf.cast(256 - (level * 256) // max_level, tf.float32)
    bits = 8 - (level * 4) // max_level
    branches = [
        lambda: img,
        lambda: _autocontrast(img),
        lambda: _equalize(img),
        lambda: _solarize(img, threshold),
        lambda: enhance("Color", img, fac),
        lambda: _posterize(img, bits),
        lambda: enhance("Contrast", img, fac),
        lambda: enhance("Brightness", img, fac),
        lambda: enhance("Sharpness", img, fac),
    ]
    out = tf.switch_case(op, branches)
    out.set_shape(img.shape)
    return out


def trivial_augment(img, gen, max_level: int = 30):
    """TrivialAugment as MultiAugs uses it (MultiAugs lib/utils/aug_lib.py): one of 9 colour ops, level U{0..30},
    no geometric op. ``img``: ``[H, W, 3]`` uint8-valued float."""
    img = tf.convert_to_tensor(img, tf.float32)
    op = gen.uniform([], 0, len(TRIVIAL_AUG_OPS), dtype=tf.int32)
    level = gen.uniform([], 0, max_level + 1, dtype=tf.int32)
    return trivial_augment_op(op, level, img, max_level)


def yoco(a, b, u):
    """YOCO stitch of two copies ``[H, W, C]``: u > 0.5 takes rows [H // 2, H) from ``b``, else
    columns [W // 2, W) (MultiAugs lib/utils/aug_lib.py)."""
    h, w = tf.shape(a)[0], tf.shape(a)[1]
    rows = tf.range(h)[:, None, None] >= h // 2
    cols = tf.range(w)[None, :, None] >= w // 2
    return tf.where(tf.where(u > 0.5, rows, cols), b, a)
