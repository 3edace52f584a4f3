"""Keypoints <-> heatmaps: target encoding, argmax decoding with 'shift' / DARK refinement, flip.

:class:`HeatmapCodec` holds one run's settings (sizes, sigma, stride, rounding rule, flip test,
post-processing) and is the one object the input pipeline, the hard views, evaluation and export use;
:class:`InputNormaliser` is the crop side (channel order, mean and std). The functions below them are
the same operations with every setting passed explicitly.

Heatmaps are channels-last ``[..., h, w, J]``. Every function is TensorFlow and works eagerly on
numpy inputs or inside a graph (the SavedModel uses the decode side).

Example:
    >>> from posedual_tf.codec import HeatmapCodec
    >>> codec = HeatmapCodec(image_size=(48, 64), heatmap_size=(12, 16), sigma=2.0)
    >>> codec.stride
    (4.0, 4.0)
    >>> maps, weight = codec.encode([[20.0, 32.0]], [1.0])
    >>> tuple(maps.shape), float(weight[0])
    ((16, 12, 1), 1.0)
    >>> center, scale = [[24.0, 32.0]], [[48 / 200, 64 / 200]]        # the crop is the whole image
    >>> coords, score = codec.decode(maps[None], center, scale)
    >>> [round(float(v), 2) for v in coords[0, 0]], round(float(score[0, 0]), 2)
    ([20.0, 32.0], 1.0)
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from posedual_tf import geometry, joints as joint_sets


# ------------------------------------------------------------------------------ the codec objects

@dataclasses.dataclass(frozen=True)
class HeatmapCodec:
    """One run's heatmap settings, built once (:meth:`from_config`) and shared by the pipeline (targets),
    the hard views (their stride places boxes at teacher joints), evaluation and export (decoding).

    Args:
      image_size, heatmap_size: ``(W, H)`` of the network input and ``(w, h)`` of its heatmaps.
      sigma: Gaussian sigma of the targets, in heatmap pixels.
      floor_rounding: targets centred with ``floor(x + 0.5)`` (``fixes.target_rounding``) instead of the
        reference's truncation.
      post_process: ``shift`` (reference), ``dark`` or ``none``; ``wide_shift_bound``: ``fixes.shift_bound``.
      flip_test, shift_heatmap: inference averages the mirrored pass (``test.flip_test``), moved back by one
        pixel (``test.shift_heatmap``).
    """

    image_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0
    floor_rounding: bool = False
    post_process: str = "shift"
    wide_shift_bound: bool = False
    flip_test: bool = False
    shift_heatmap: bool = True

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "heatmap_size", tuple(int(v) for v in self.heatmap_size))
        if self.post_process not in ("shift", "dark", "none"):
            raise ValueError(f"post_process: expected 'shift', 'dark' or 'none', got {self.post_process!r}")

    @classmethod
    def from_config(cls, cfg, **overrides) -> "HeatmapCodec":
        """The codec of a :class:`posedual_tf.config.Config` (``data``, ``test`` and ``fixes`` settings);
        ``overrides`` replace single fields (an export's own ``flip_test``, say)."""
        d, t, f = cfg.data, cfg.test, cfg.fixes
        values = dict(image_size=d.image_size, heatmap_size=d.heatmap_size, sigma=d.sigma,
                      floor_rounding=f.target_rounding, post_process=t.post_process, wide_shift_bound=f.shift_bound,
                      flip_test=t.flip_test, shift_heatmap=t.shift_heatmap)
        values.update(overrides)
        return cls(**values)

    @property
    def stride(self) -> tuple[float, float]:
        """Input pixels per heatmap pixel, ``(x, y)``."""
        return (self.image_size[0] / self.heatmap_size[0], self.image_size[1] / self.heatmap_size[1])

    def encode(self, joints, joints_vis):
        """Gaussian targets and target weights of crop-space joints (:func:`encode_heatmaps`)."""
        return encode_heatmaps(joints, joints_vis, self.image_size, self.heatmap_size, self.sigma,
                               self.floor_rounding)

    def decode(self, heatmaps, center, scale, rotation=None):
        """Image coordinates and scores of ``[B, h, w, J]`` heatmaps (:func:`decode_heatmaps`)."""
        return decode_heatmaps(heatmaps, center, scale, rotation, self.post_process, self.wide_shift_bound)

    def network_heatmaps(self, net, images):
        """Inference heatmaps of one network (float32), with the flip test when the codec says so."""
        return network_heatmaps(net, images, self.flip_test, self.shift_heatmap)


@dataclasses.dataclass(frozen=True)
class InputNormaliser:
    """The network's input convention: channel order (``data.color_rgb``: RGB, else BGR as the reference's
    OpenCV reads) and the per-channel ``mean``/``std`` of ``[0, 1]`` pixels.

    Example:
        >>> import tensorflow as tf
        >>> from posedual_tf.codec import InputNormaliser
        >>> norm = InputNormaliser(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), color_rgb=False)
        >>> [float(v) for v in norm.from_rgb(tf.constant([[[255.0, 0.0, 127.5]]]))[0, 0]]
        [0.0, -2.0, 2.0]
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_rgb: bool = False

    @classmethod
    def from_config(cls, data) -> "InputNormaliser":
        """From a config's ``data`` section."""
        return cls(tuple(data.mean), tuple(data.std), bool(data.color_rgb))

    def to_model_order(self, rgb, levels: bool = False):
        """RGB pixels in the network's channel order.

        ``levels``: the values are whole grey levels (0-255, float). They are then reordered by a ``[3, 3]``
        permutation matmul, which is exact for them even where matmuls round to TF32 or bfloat16, and on a
        CPU costs a fifth of reversing the last axis (0.3 against 1.4 ms per 256x192 crop,
        docs/benchmarks.md).
        """
        if self.color_rgb:
            return rgb
        if not levels:
            return rgb[..., ::-1]
        flat = tf.reshape(rgb, [-1, 3]) @ tf.constant(np.eye(3, dtype=np.float32)[::-1])
        return tf.reshape(flat, tf.shape(rgb))

    def normalise(self, pixels):
        """``[0, 255]`` pixels already in the network's channel order -> network input (float32).

        uint8 pixels are looked up in a table of the 256 x 3 values, so that the result does not depend
        on how a compiled step rearranges the arithmetic (a training step's graph rewrites move it by up
        to 1e-6): a uint8 crop normalised in the step equals the crop normalised in the input pipeline.
        """
        if tf.as_dtype(pixels.dtype) == tf.uint8:
            table = tf.constant(self._table().reshape(-1))
            return tf.gather(table, tf.cast(pixels, tf.int32) * 3 + tf.range(3))
        x = tf.cast(pixels, tf.float32)
        return (x / 255.0 - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)

    def _table(self) -> np.ndarray:
        """``[256, 3]`` float32: :meth:`normalise` of every grey level per channel, in float32 steps."""
        levels = np.arange(256, dtype=np.float32)[:, None]
        return (levels / np.float32(255.0) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def from_rgb(self, rgb):
        """``[0, 255]`` RGB pixels -> network input."""
        return self.normalise(self.to_model_order(tf.cast(rgb, tf.float32)))

    def to_unit_rgb(self, x: np.ndarray) -> np.ndarray:
        """Network input (numpy) -> RGB pixels in ``[0, 1]`` (clipped), for drawing."""
        unit = np.clip(np.asarray(x) * np.array(self.std) + np.array(self.mean), 0, 1)
        return unit if self.color_rgb else unit[..., ::-1]


# ------------------------------------------------------------------------------ encode

@dataclasses.dataclass(frozen=True)
class TrainingInputs:
    """What the training step makes of a batch from the pipeline, on the device: uint8 crops
    normalised (:class:`InputNormaliser`), and Gaussian targets with their weights encoded from the
    crop-space joints (:meth:`HeatmapCodec.encode`), so the host ships uint8 pixels and joints only.

    Example:
        >>> import tensorflow as tf
        >>> from posedual_tf.codec import TrainingInputs, HeatmapCodec, InputNormaliser
        >>> prepare = TrainingInputs(HeatmapCodec((48, 64), (12, 16), 2.0),
        ...                          InputNormaliser((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
        >>> part = {"image": tf.fill([1, 64, 48, 3], tf.constant(255, tf.uint8)),
        ...         "joints": tf.fill([1, 24, 2], 20.0), "vis": tf.ones([1, 24])}
        >>> out = prepare(part)
        >>> float(out["image"][0, 0, 0, 0]), tuple(out["target"].shape), float(out["target"][0, 5, 5, 0])
        (1.0, (1, 16, 12, 24), 1.0)
    """

    heatmaps: HeatmapCodec
    inputs: InputNormaliser

    @classmethod
    def from_config(cls, cfg, heatmaps: HeatmapCodec | None = None) -> "TrainingInputs":
        return cls(heatmaps or HeatmapCodec.from_config(cfg), InputNormaliser.from_config(cfg.data))

    def __call__(self, part: dict) -> dict:
        """One stream's batch (a dict): ``image`` warped from ``window``/``inverse`` where the pipeline
        shipped decoded windows (``data.crops_on=device``, :func:`crops_from_windows`); every uint8
        ``image*`` normalised; ``target``/``weight`` from ``joints``/``vis`` where the batch has joints and
        no targets. Anything else passes through."""
        if "window" in part:
            crops = crops_from_windows(part["window"], part["inverse"], self.heatmaps.image_size, self.inputs)
            part = {**{k: v for k, v in part.items() if k not in ("window", "inverse")}, "image": crops}
        out = dict(part)
        for key, value in part.items():
            if key.startswith("image") and value.dtype == tf.uint8:
                out[key] = self.inputs.normalise(value)
        if "joints" in part and "target" not in part:
            out["target"], out["weight"] = self.heatmaps.encode(part["joints"], part["vis"])
        return out


def _compiling_with_xla() -> bool:
    """Whether the graph being built is compiled by XLA (``tf.function(jit_compile=True)``, Keras'
    ``jit_compile``). TensorFlow offers no public test; where its private one is missing, True (the
    gathers compile everywhere and are exact everywhere)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:                                  # pragma: no cover - a TF without the helper
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


def crops_from_windows(windows, inverse, image_size: Sequence[int], inputs: InputNormaliser):
    """The uint8 crops of a batch from the decoded parts of its images (``data.crops_on=device``):
    ``windows [B, h, w, 3]`` RGB uint8 (zero-padded beyond each window), ``inverse [B, 2, 3]`` crop pixel
    -> window pixel. Bilinear with a black border, rounded to grey levels as ``cv2.warpAffine`` writes
    uint8, in the network's channel order: the crops the host path makes (within a grey level where
    float rounding puts a sample on the other side of a half). Inside an XLA-compiled function it is
    written as gathers (:func:`geometry.tf_gather_warp`: TF 2.21 has no XLA kernel for the warp op),
    elsewhere it is the warp op the host path uses (7x faster than the gathers without XLA on a CPU,
    docs/benchmarks.md)."""
    warp = geometry.tf_gather_warp if _compiling_with_xla() else geometry.tf_warp
    crops = tf.round(warp(windows, inverse, image_size))
    crops = inputs.to_model_order(crops, levels=True)
    return tf.cast(tf.clip_by_value(crops, 0.0, 255.0), tf.uint8)


def encode_heatmaps(joints, joints_vis, image_size: Sequence[int], heatmap_size: Sequence[int],
                    sigma: float, floor_rounding: bool = False):
    """Reference Gaussian targets (reference lib/dataset/JointsDataset.py: ``JointsDataset.generate_target``).

    Args:
      joints: ``[..., J, 2]`` crop-space joint coordinates.
      joints_vis: ``[..., J]`` visibility (0/1).
      image_size, heatmap_size: ``[W, H]`` and ``[w, h]``.
      sigma: Gaussian sigma in heatmap pixels; the patch is cut at ``3 sigma``.
      floor_rounding: round centres with ``floor(x + 0.5)`` (fix of oddity 11) instead of the
        reference's ``int()``, which truncates toward zero.

    Returns:
      heatmaps ``[..., h, w, J]`` float32 and target weights ``[..., J]`` float32.
    """
    joints = tf.convert_to_tensor(joints, tf.float32)
    vis = tf.convert_to_tensor(joints_vis, tf.float32)
    w, h = int(heatmap_size[0]), int(heatmap_size[1])
    stride = tf.constant([image_size[0] / w, image_size[1] / h], tf.float32)
    tmp = 3.0 * sigma
    size = int(2 * tmp + 1)
    half = size // 2

    def to_int(v):
        return tf.cast(tf.floor(v), tf.int32) if floor_rounding else tf.cast(v, tf.int32)

    mu = to_int(joints / stride + 0.5)                       # [..., J, 2]
    mu_f = tf.cast(mu, tf.float32)
    ul = tf.cast(mu_f - tmp, tf.int32)                       # int() truncation as the reference
    br = tf.cast(mu_f + tmp + 1.0, tf.int32)
    outside = (ul[..., 0] >= w) | (ul[..., 1] >= h) | (br[..., 0] < 0) | (br[..., 1] < 0)
    weight = tf.where(outside, 0.0, vis)
    centre = tf.cast(ul + half, tf.float32)                  # patch peak in map pixels

    def axis_profile(axis: int, length: int):
        p = tf.range(length, dtype=tf.int32)                 # [L]
        lo, hi = ul[..., axis, None], br[..., axis, None]    # [..., J, 1]
        inside = (p >= lo) & (p < hi)
        d = tf.cast(p, tf.float32) - centre[..., axis, None]
        return tf.where(inside, tf.exp(-(d * d) / (2.0 * sigma * sigma)), 0.0)  # [..., J, L]

    gx = axis_profile(0, w)
    gy = axis_profile(1, h)
    draw = tf.cast(weight > 0.5, tf.float32)[..., None, None]             # [..., J, 1, 1]
    maps = gy[..., :, None] * gx[..., None, :] * draw                      # [..., J, h, w]
    rank = len(maps.shape)
    perm = list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3]
    return tf.transpose(maps, perm), weight


# ------------------------------------------------------------------------------ flip

def flip_back(heatmaps, shift_heatmap: bool = True):
    """Map heatmaps of a mirrored input back: mirror the width, swap union flip pairs, shift.

    ``shift_heatmap`` moves the result right by one pixel (column 0 kept), as the reference's
    default; otherwise it is resampled at ``x - 0.75`` px (bilinear, zero fill).
    """
    heatmaps = tf.convert_to_tensor(heatmaps)
    flipped = tf.reverse(heatmaps, axis=[-2])
    perm = joint_sets.union_flip_permutation() if heatmaps.shape[-1] == joint_sets.NUM_UNION else None
    if perm is not None:
        flipped = tf.gather(flipped, perm, axis=-1)
    if shift_heatmap:
        return tf.concat([flipped[..., :, :1, :], flipped[..., :, :-1, :]], axis=-2)
    # out(x) = 0.25 in(x) + 0.75 in(x - 1), zero for x - 1 < 0
    prev = tf.concat([tf.zeros_like(flipped[..., :, :1, :]), flipped[..., :, :-1, :]], axis=-2)
    return 0.25 * flipped + 0.75 * prev


def network_heatmaps(net, images, flip_test: bool = False, shift_heatmap: bool = True):
    """Inference heatmaps (float32) of one network, averaged with the flipped pass when ``flip_test``
    (reference lib/core/inference.py: ``get_final_preds``)."""
    hm = tf.cast(net(images, training=False), tf.float32)
    if not flip_test:
        return hm
    flipped = tf.cast(net(tf.reverse(images, axis=[2]), training=False), tf.float32)
    return 0.5 * (hm + flip_back(flipped, shift_heatmap))


def flip_joints(joints, joints_vis, image_width, flip_pairs: Sequence[tuple[int, int]]):
    """Mirror ``[J, 2]`` image joints: ``x <- W - 1 - x``, swap pairs, zero invisible joints."""
    joints = tf.convert_to_tensor(joints, tf.float32)
    vis = tf.convert_to_tensor(joints_vis, tf.float32)
    perm = np.arange(joints.shape[-2])
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    x = tf.cast(image_width, tf.float32) - 1.0 - joints[..., 0]
    mirrored = tf.stack([x, joints[..., 1]], axis=-1)
    mirrored = tf.gather(mirrored, perm, axis=-2)
    vis = tf.gather(vis, perm, axis=-1)
    return mirrored * vis[..., None], vis


# ------------------------------------------------------------------------------ decode

def argmax_coords(heatmaps):
    """``[B, h, w, J]`` -> integer-valued coords ``[B, J, 2]`` (x, y) and maxvals ``[B, J]``.

    The first maximum in row-major order wins; coordinates are zero where the max is <= 0.
    """
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    shape = tf.shape(heatmaps)
    b, h, w, j = shape[0], shape[1], shape[2], shape[3]
    flat = tf.reshape(tf.transpose(heatmaps, [0, 3, 1, 2]), [b, j, h * w])
    idx = tf.argmax(flat, axis=-1, output_type=tf.int32)
    maxvals = tf.reduce_max(flat, axis=-1)
    coords = tf.cast(tf.stack([idx % w, idx // w], axis=-1), tf.float32)
    coords = tf.where((maxvals > 0.0)[..., None], coords, 0.0)
    return coords, maxvals


def _gather_map(maps_bjhw, x, y):
    """Values of ``[B, J, h, w]`` maps at integer ``x, y`` ``[B, J]`` (clamped)."""
    shape = tf.shape(maps_bjhw)
    b, j, h, w = shape[0], shape[1], shape[2], shape[3]
    x = tf.clip_by_value(x, 0, w - 1)
    y = tf.clip_by_value(y, 0, h - 1)
    # one flat gather: gather_nd with batch_dims builds its index grid with an int32 op that oneDNN
    # announces on the console ("supports DT_INT32 only on platforms with AVX-512") at every evaluation
    rows = tf.reshape(tf.range(b * j), [b, j])
    return tf.gather(tf.reshape(maps_bjhw, [-1]), rows * (h * w) + y * w + x)


def shift_refine(heatmaps, coords, wide_bound: bool = False):
    """The reference quarter-pixel 'shift' toward the higher neighbour (reference lib/core/inference.py: ``get_final_preds``).

    The reference bound ``1 < p < size - 1`` excludes p = 1; ``wide_bound`` (fix of oddity 14)
    uses ``0 < p < size - 1``.
    """
    maps = tf.transpose(tf.convert_to_tensor(heatmaps, tf.float32), [0, 3, 1, 2])
    h, w = tf.shape(maps)[2], tf.shape(maps)[3]
    p = tf.cast(tf.floor(coords + 0.5), tf.int32)
    px, py = p[..., 0], p[..., 1]
    lo = 0 if wide_bound else 1
    ok = (px > lo) & (px < w - 1) & (py > lo) & (py < h - 1)
    dx = _gather_map(maps, px + 1, py) - _gather_map(maps, px - 1, py)
    dy = _gather_map(maps, px, py + 1) - _gather_map(maps, px, py - 1)
    delta = 0.25 * tf.sign(tf.stack([dx, dy], axis=-1))
    return coords + tf.where(ok[..., None], delta, 0.0)


def _dark_blur(heatmaps):
    """The reference DARK blur: 11x11 Gaussian (sigma 2), zero border, max restored per map."""
    k1 = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 2.0 ** 2))
    k1 /= k1.sum()
    j = heatmaps.shape[-1]
    kernel = tf.constant(np.outer(k1, k1)[:, :, None, None] * np.ones([1, 1, j, 1]), tf.float32)
    blurred = tf.nn.depthwise_conv2d(heatmaps, kernel, [1, 1, 1, 1], "SAME")
    orig_max = tf.reduce_max(heatmaps, axis=[1, 2], keepdims=True)
    new_max = tf.reduce_max(blurred, axis=[1, 2], keepdims=True)
    return tf.math.divide_no_nan(blurred * orig_max, new_max)


def dark_refine(heatmaps, coords):
    """DARK: Taylor step on the log of the blurred map at ``int(coord)`` (reference lib/core/inference.py: ``get_final_preds``)."""
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    logm = tf.math.log(tf.maximum(_dark_blur(heatmaps), 1e-10))
    maps = tf.transpose(logm, [0, 3, 1, 2])
    h, w = tf.shape(maps)[2], tf.shape(maps)[3]
    p = tf.cast(coords, tf.int32)
    x, y = p[..., 0], p[..., 1]
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)

    def at(dx, dy):
        return _gather_map(maps, x + dx, y + dy)

    c = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    safe = tf.where(det != 0, det, 1.0)
    step_x = (dyy * dx - dxy * dy) / safe
    step_y = (dxx * dy - dxy * dx) / safe
    step = tf.stack([step_x, step_y], axis=-1)
    return coords - tf.where((ok & (det != 0))[..., None], step, 0.0)


def decode_heatmaps(heatmaps, center, scale, rotation=None, post_process: str = "shift",
                    wide_shift_bound: bool = False):
    """Heatmaps ``[B, h, w, J]`` -> image coordinates ``[B, J, 2]`` and scores ``[B, J]``.

    ``post_process`` is 'shift' (reference default), 'dark' or 'none'. ``center``/``scale``
    ``[B, 2]`` and ``rotation`` ``[B]`` (degrees, default 0) are those of the crop.
    """
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    coords, maxvals = argmax_coords(heatmaps)
    if post_process == "shift":
        coords = shift_refine(heatmaps, coords, wide_shift_bound)
    elif post_process == "dark":
        coords = dark_refine(heatmaps, coords)
    elif post_process != "none":
        raise ValueError(f"post_process: expected 'shift', 'dark' or 'none', got {post_process!r}")
    hm_size = (int(heatmaps.shape[2]), int(heatmaps.shape[1]))
    if rotation is None:
        rotation = tf.zeros(tf.shape(heatmaps)[:1], tf.float32)
    inv = geometry.tf_affine_matrix(center, scale, rotation, hm_size, inverse=True)
    return geometry.tf_transform_points(coords, inv), maxvals
