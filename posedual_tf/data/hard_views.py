"""Hard-view primitives and the paths built from them (reference lib/models/pose_dual.py: ``mask_joint``; MultiAugs lib/utils/augments.py and ``PoseCotrain.forward``).

Every primitive is a batched op on the normalised easy view ``[B, H, W, C]``, run without gradient
and before the batch affine. JO, CO, CM and MU are split in two: ``*_draws(rng, ...)`` makes the
random choices from a :class:`~posedual_tf.data.augment.StatelessRng`, and the op itself applies given
draws, so tests can inject them (JC takes the RNG itself, as before, and tests inject its draws through a
fake RNG). The reference's geometry is the default; each ``fixes`` switch is an argument.

* :func:`joint_cutout` (JC): zero boxes around teacher joints.
* :func:`joint_cut_occlusion` (JO): paste patches cut around a batch-mate's joints onto this
  sample's joints.
* :func:`cutout` (CO): zero random holes. :func:`cutmix` (CM): fill them from a permuted batch-mate.
* :func:`mixup` (MU): blend with a permuted batch-mate.

The paths built from them (``method.paths``), their settings and the collapse study's pairs are in
:mod:`posedual_tf.data.view_paths`.

Example:
    >>> import tensorflow as tf
    >>> from posedual_tf.data.hard_views import hole_draws, cutout
    >>> from posedual_tf.data import augment
    >>> rng = augment.StatelessRng([0, 1])
    >>> holes = hole_draws(rng, batch_size=2, height=64, width=48, holes=5)
    >>> out = cutout(tf.ones([2, 64, 48, 3]), holes)       # 5 zeroed boxes per image
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf


# ------------------------------------------------------------------------------ shared geometry

def teacher_joints(heatmaps, stride: int = 4):
    """``[B, h, w, J]`` heatmaps -> ``[B, J, 2]`` float (x, y) = stride x first argmax (all channels)."""
    hm = tf.convert_to_tensor(heatmaps, tf.float32)
    b, j, w_hm = tf.shape(hm)[0], int(hm.shape[3]), tf.shape(hm)[2]
    flat = tf.reshape(tf.transpose(hm, [0, 3, 1, 2]), [b, j, -1])
    idx = tf.argmax(flat, axis=-1, output_type=tf.int32)
    return tf.cast(tf.stack([idx % w_hm, idx // w_hm], -1), tf.float32) * stride


def jittered_joints(rng, heatmaps, stride: int = 4, jitter: float = 10.0):
    """trunc(teacher joints + jitter * N(0, 1)) as ``[B, J, 2]`` int32 (x, y)."""
    pts = teacher_joints(heatmaps, stride)
    return tf.cast(pts + jitter * rng.normal(tf.shape(pts)), tf.int32)


def box_mask(r0, r1, c0, c1, height: int, width: int):
    """Union over the last axis of boxes rows [r0, r1) x cols [c0, c1): ``[B, K]`` ints -> ``[B, H, W]`` bool."""
    rows = tf.range(height)[None, None, :]
    cols = tf.range(width)[None, None, :]
    in_r = (rows >= r0[..., None]) & (rows < r1[..., None])               # [B, K, H]
    in_c = (cols >= c0[..., None]) & (cols < c1[..., None])               # [B, K, W]
    return tf.reduce_any(in_r[..., :, None] & in_c[..., None, :], axis=1)


def _fill(images, mask, value):
    return tf.where(mask[..., None], tf.cast(value, images.dtype), images)


# ------------------------------------------------------------------------------ JC

def joint_cutout(gen, images, teacher_heatmaps, num_boxes: int,
                 allowed_joints: Sequence[int] | None = None, swap_axes: bool = True,
                 stride: int = 4, jitter: float = 10.0, half_size: tuple[int, int] = (10, 19)):
    """Zero ``num_boxes`` boxes per image around the teacher's argmax joints (reference lib/models/pose_dual.py: ``mask_joint``).

    Args:
      images: ``[B, H, W, C]`` normalised hard-view inputs.
      teacher_heatmaps: ``[B, h, w, J]``; joints are their argmax times ``stride``.
      allowed_joints: joint ids to draw from *without* replacement (fix of oddity 2); None =
        the reference: ``num_boxes`` draws with replacement from all J channels.
      swap_axes: the reference clamps x to [0, H] and y to [0, W] (oddity 1); False clamps x to
        [0, W] and y to [0, H].
    Returns:
      the masked images and the ``[B, H, W, 1]`` mask that was zeroed (1 = cut).
    """
    images = tf.convert_to_tensor(images)
    b = tf.shape(images)[0]
    h_img, w_img = int(images.shape[1]), int(images.shape[2])
    j = int(teacher_heatmaps.shape[3])
    q = jittered_joints(gen, teacher_heatmaps, stride, jitter)
    sizes = gen.uniform([b, j, 2], half_size[0], half_size[1] + 1, dtype=tf.int32)
    x_lim, y_lim = (h_img, w_img) if swap_axes else (w_img, h_img)
    x0 = tf.clip_by_value(q[..., 0] - sizes[..., 0], 0, x_lim)
    x1 = tf.clip_by_value(q[..., 0] + sizes[..., 0], 0, x_lim)
    y0 = tf.clip_by_value(q[..., 1] - sizes[..., 1], 0, y_lim)
    y1 = tf.clip_by_value(q[..., 1] + sizes[..., 1], 0, y_lim)
    if allowed_joints is None:
        choice = gen.uniform([b, num_boxes], 0, j, dtype=tf.int32)
    else:
        allowed = tf.constant(list(allowed_joints), tf.int32)
        keys = gen.uniform([b, len(allowed_joints)])
        order = tf.argsort(keys, axis=-1)[:, :num_boxes]
        choice = tf.gather(allowed, order)
    gather = lambda v: tf.gather(v, choice, batch_dims=1)                                  # [B, K]
    mask = box_mask(gather(y0), gather(y1), gather(x0), gather(x1), h_img, w_img)
    return _fill(images, mask, 0.0), tf.cast(mask, tf.float32)[..., None]


# ------------------------------------------------------------------------------ JO

@dataclasses.dataclass
class OcclusionDraws:
    """Draws of one JO call: jittered joints ``q [B, J, 2]`` (x, y), half-sizes ``half [B, J, 2]``
    (row, column), destination and source joint ids ``dest, src [B, K]`` and source samples ``source [B]``."""

    q: tf.Tensor
    half: tf.Tensor
    dest: tf.Tensor
    src: tf.Tensor
    source: tf.Tensor


def occlusion_draws(rng, teacher_heatmaps, num_joints: int, stride: int = 4, jitter: float = 10.0,
                    half_size: tuple[int, int] = (10, 19), people=None) -> OcclusionDraws:
    """JO's draws in the reference's order: normal, half-sizes, then per sample ids and source.

    ``people``: the batch's real people when its last places are empty (a filled batch; None: all):
    the sources are drawn among them, and their draws are those of the batch without the empty places."""
    q = jittered_joints(rng, teacher_heatmaps, stride, jitter)
    b, j = tf.shape(q)[0], int(teacher_heatmaps.shape[3])
    half = rng.uniform([b, j, 2], half_size[0], half_size[1] + 1, dtype=tf.int32)
    dest = rng.uniform([b, num_joints], 0, j, dtype=tf.int32)
    src = rng.uniform([b, num_joints], 0, j, dtype=tf.int32)
    source = rng.uniform([b], 0, b if people is None else people, dtype=tf.int32)
    return OcclusionDraws(q, half, dest, src, source)


def _slice_bounds(start, end, size: int):
    """Python slice semantics of ``[start:end]`` on an axis of ``size`` (start >= 0): (start, length)."""
    end = tf.where(end < 0, end + size, end)
    start, end = tf.minimum(start, size), tf.clip_by_value(end, 0, size)
    return start, tf.maximum(end - start, 0)


def joint_cut_occlusion(images, draws: OcclusionDraws, transposed: bool = True, exact_boxes: bool = False):
    """Joint Cut-Occlusion (MultiAugs lib/utils/augments.py: ``keypoint_cutmix_perception``): per sample, K patches cut around joints of one batch-mate
    (read from the batch before any paste) pasted around this sample's joints, in order.

    Args:
      transposed: the reference's anchor (oddity 1): joint x is the row and y the column. False puts the
        box at the joint.
      exact_boxes: fix of oddity 2: the source box (half-sizes around its unclipped anchor) is moved onto
        the destination anchor and the part of it that lies inside the image on both ends is copied; no
        zero fills, last row and column included. False = the reference's clipped boxes, start/end
        shifts, zero fill on a size mismatch, Python wrap of a negative end.
    """
    images = tf.convert_to_tensor(images)
    h, w = int(images.shape[1]), int(images.shape[2])
    q, half = draws.q, draws.half
    row, col = (q[..., 0], q[..., 1]) if transposed else (q[..., 1], q[..., 0])
    pick = lambda v, ids: tf.gather(v, ids, batch_dims=1)                                   # [B, J] -> [B, K]
    src_of = lambda v: pick(tf.gather(v, draws.source), draws.src)
    r_s, c_s, er, ec = src_of(row), src_of(col), src_of(half[..., 0]), src_of(half[..., 1])
    r_d, c_d = pick(row, draws.dest), pick(col, draws.dest)
    if exact_boxes:
        dr, dc = r_d - r_s, c_d - c_s
        d0 = tf.maximum(tf.maximum(r_d - er, 0), dr)
        d1 = tf.minimum(tf.minimum(r_d + er, h), h + dr)
        e0 = tf.maximum(tf.maximum(c_d - ec, 0), dc)
        e1 = tf.minimum(tf.minimum(c_d + ec, w), w + dc)
        rs, cs = d0 - dr, e0 - dc
        paste = (d1 > d0) & (e1 > e0)
        zero = tf.zeros_like(paste)
    else:
        def axis(anchor_s, half_s, anchor_d, size):
            s0 = tf.clip_by_value(anchor_s - half_s, 0, size - 1)
            s1 = tf.clip_by_value(anchor_s + half_s, 0, size - 1)
            lo, hi = tf.abs(s0 - anchor_s), tf.abs(s1 - anchor_s)
            d0 = tf.clip_by_value(anchor_d - lo, 0, size - 1)
            d1 = tf.clip_by_value(anchor_d + hi, 0, size - 1)
            off = tf.abs((s1 - s0) - (d1 - d0))
            start = s0 + tf.where(d0 == 0, off, 0)
            end = s1 - tf.where(d1 == size - 1, off, 0)
            start, length = _slice_bounds(start, end, size)
            return d0, d1, start, length

        d0, d1, rs, len_r = axis(r_s, er, r_d, h)
        e0, e1, cs, len_c = axis(c_s, ec, c_d, w)
        dest_ok = (d1 > d0) & (e1 > e0)
        fits = (len_r == d1 - d0) & (len_c == e1 - e0) & (len_r > 0) & (len_c > 0)
        paste, zero = dest_ok & fits, dest_ok & ~fits
    source_images = tf.gather(images, draws.source)                                       # [B, H, W, C]
    out = images
    for k in range(int(draws.dest.shape[1])):
        rows = tf.clip_by_value(rs[:, k, None] + tf.range(h)[None] - d0[:, k, None], 0, h - 1)
        cols = tf.clip_by_value(cs[:, k, None] + tf.range(w)[None] - e0[:, k, None], 0, w - 1)
        patch = tf.gather(tf.gather(source_images, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
        inside = box_mask(d0[:, k, None], d1[:, k, None], e0[:, k, None], e1[:, k, None], h, w)[..., None]
        out = tf.where(inside & paste[:, k, None, None, None], patch,
                       tf.where(inside & zero[:, k, None, None, None], tf.zeros_like(out), out))
    return out


# ------------------------------------------------------------------------------ CO, CM, MU

@dataclasses.dataclass
class HoleDraws:
    """Holes ``[B, K]``: row and column ranges [r0, r1) x [c0, c1); ``perm [B]`` for CutMix."""

    r0: tf.Tensor
    r1: tf.Tensor
    c0: tf.Tensor
    c1: tf.Tensor
    perm: tf.Tensor | None = None


def hole_draws(rng, batch_size, height: int, width: int, holes: int, swap_axes: bool = True,
               with_perm: bool = False, half_size: tuple[int, int] = (10, 19), people=None) -> HoleDraws:
    """CO/CM boxes (MultiAugs lib/utils/augments.py: ``random_cutout``, ``random_cutmix``): column centre, row centre, half-sizes (column, row), [perm].

    ``swap_axes`` (the reference, oddity 3) draws and clamps columns with H and rows with W.
    ``people``: as :func:`random_permutation`'s.
    """
    col_lim, row_lim = (height, width) if swap_axes else (width, height)
    cc = rng.uniform([batch_size, holes], 0, col_lim, dtype=tf.int32)
    cr = rng.uniform([batch_size, holes], 0, row_lim, dtype=tf.int32)
    half = rng.uniform([batch_size, holes, 2], half_size[0], half_size[1] + 1, dtype=tf.int32)
    clip_c = lambda v: tf.clip_by_value(v, 0, col_lim)
    clip_r = lambda v: tf.clip_by_value(v, 0, row_lim)
    perm = random_permutation(rng, batch_size, people) if with_perm else None
    return HoleDraws(clip_r(cr - half[..., 1]), clip_r(cr + half[..., 1]),
                     clip_c(cc - half[..., 0]), clip_c(cc + half[..., 0]), perm)



def random_permutation(rng, n, people=None):
    """A uniform permutation of ``n``. ``people``: only the first ``people`` places hold people (a filled
    batch): they are permuted among themselves exactly as a batch of ``people`` would be, and the
    empty places stay where they are."""
    keys = rng.uniform([n])
    if people is not None:
        keys = tf.where(tf.range(n) < people, keys, 2.0 + tf.cast(tf.range(n), keys.dtype))
    return tf.argsort(keys, stable=True)


def _holes_mask(images, d: HoleDraws):
    return box_mask(d.r0, d.r1, d.c0, d.c1, int(images.shape[1]), int(images.shape[2]))


def cutout(images, draws: HoleDraws):
    """Cutout (CO): every hole set to 0 (the mean colour in normalised space)."""
    images = tf.convert_to_tensor(images)
    return _fill(images, _holes_mask(images, draws), 0.0)


def cutmix(images, draws: HoleDraws):
    """CutMix (CM): every hole of sample b takes the same region of sample perm(b) (read before any paste)."""
    images = tf.convert_to_tensor(images)
    return tf.where(_holes_mask(images, draws)[..., None], tf.gather(images, draws.perm), images)


def mixup_draws(rng, batch_size, alpha: float = 0.2, people=None):
    """(lambda' = 1 - Beta(alpha, alpha) / 4, one per call; permutation; ``people`` as
    :func:`random_permutation`'s)."""
    g = rng.gamma([2], alpha)
    return 1.0 - (g[0] / (g[0] + g[1])) / 4.0, random_permutation(rng, batch_size, people)


def mixup(images, lam, perm):
    """MixUp (MU): ``lam * x + (1 - lam) * x[perm]``; targets unchanged."""
    images = tf.convert_to_tensor(images)
    lam = tf.cast(lam, images.dtype)
    return lam * images + (1 - lam) * tf.gather(images, perm)
