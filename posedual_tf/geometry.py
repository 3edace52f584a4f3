"""Box -> (center, scale), the reference affine matrix, and in-graph crops.

Conventions (reference lib/utils/transforms.py and ``JointsDataset.__getitem__``): sizes are ``[W, H]``; a scale is in units of
``PIXEL_STD = 200`` pixels; integer pixel coordinates are pixel centres; a crop's pixel ``p``
samples the image at ``M^-1 p`` (as ``cv2.warpAffine``) with bilinear interpolation and a
black border.

Example:
    >>> from posedual_tf.geometry import box_to_center_scale, get_affine_transform
    >>> c, s = box_to_center_scale([10, 20, 60, 80], aspect_ratio=0.75)
    >>> m = get_affine_transform(c, s, 0.0, (192, 256))   # [2, 3]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PIXEL_STD = 200.0
BOX_ENLARGE = 1.25


def box_to_center_scale(box: Sequence[float], aspect_ratio: float,
                        enlarge: float = BOX_ENLARGE) -> tuple[np.ndarray, np.ndarray]:
    """Reference box ``(x, y, w, h)`` -> centre and ``(s_x, s_y)`` with the aspect fixed and x1.25."""
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], np.float32) * enlarge
    return center, scale


def get_affine_transform(center, scale, rotation: float, output_size: Sequence[int],
                         shift: Sequence[float] = (0.0, 0.0), inverse: bool = False) -> np.ndarray:
    """The reference crop matrix ``[2, 3]`` (float64): ``center`` -> output centre.

    ``k = W / (200 s_x)``; a positive ``rotation`` (degrees) turns the content counter-clockwise
    on screen, as ``cv2.getRotationMatrix2D``. ``inverse`` returns the exact inverse affine.
    """
    scale = np.asarray(scale, np.float64).reshape(-1)
    if scale.size == 1:
        scale = np.repeat(scale, 2)
    center = np.asarray(center, np.float64) + PIXEL_STD * scale * np.asarray(shift, np.float64)
    theta = np.deg2rad(rotation)
    k = output_size[0] / (PIXEL_STD * scale[0])
    a = k * np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    t = np.array([output_size[0] * 0.5, output_size[1] * 0.5]) - a @ center
    m = np.concatenate([a, t[:, None]], axis=1)
    return invert_affine(m) if inverse else m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a ``[..., 2, 3]`` affine (numpy)."""
    a, t = m[..., :2], m[..., 2:]
    a_inv = np.linalg.inv(a)
    return np.concatenate([a_inv, -a_inv @ t], axis=-1)


def affine_transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply ``[2, 3]`` affine ``m`` to ``[..., 2]`` points (numpy)."""
    points = np.asarray(points, np.float64)
    return points @ m[:, :2].T + m[:, 2]


# ------------------------------------------------------------------------------ in-graph

def tf_box_to_center_scale(boxes, aspect_ratio: float, enlarge: float = BOX_ENLARGE):
    """Batched :func:`box_to_center_scale`: ``[..., 4]`` -> centres ``[..., 2]``, scales ``[..., 2]``."""
    import tensorflow as tf

    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x, y, w, h = tf.unstack(boxes, axis=-1)
    center = tf.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    wider = w > aspect_ratio * h
    narrower = w < aspect_ratio * h
    h2 = tf.where(wider, w / aspect_ratio, h)
    w2 = tf.where(narrower, h * aspect_ratio, w)
    scale = tf.stack([w2, h2], axis=-1) / PIXEL_STD * enlarge
    return center, scale


def tf_affine_matrix(center, scale, rotation, output_size: Sequence[int], inverse: bool = False, dtype=None):
    """Batched reference matrix: ``center [..., 2]``, ``scale [..., 2]``, ``rotation [...]`` -> ``[..., 2, 3]``,
    computed in ``dtype`` (float32 unless given; float64 for sampling positions rounded as OpenCV rounds them)."""
    import tensorflow as tf

    dtype = dtype or tf.float32
    center = tf.cast(center, dtype)
    scale = tf.cast(scale, dtype)
    theta = tf.cast(rotation, dtype) * (np.pi / 180.0)
    k = output_size[0] / (PIXEL_STD * scale[..., 0])
    cos, sin = tf.cos(theta), tf.sin(theta)
    out_c = tf.constant([output_size[0] * 0.5, output_size[1] * 0.5], dtype)
    if not inverse:
        a00, a01, a10, a11 = k * cos, k * sin, -k * sin, k * cos
        tx = out_c[0] - (a00 * center[..., 0] + a01 * center[..., 1])
        ty = out_c[1] - (a10 * center[..., 0] + a11 * center[..., 1])
    else:  # p_img = A^-1 (p_out - out_c) + center, with A^-1 = (1/k) R(-theta)
        a00, a01, a10, a11 = cos / k, -sin / k, sin / k, cos / k
        tx = center[..., 0] - (a00 * out_c[0] + a01 * out_c[1])
        ty = center[..., 1] - (a10 * out_c[0] + a11 * out_c[1])
    row0 = tf.stack([a00, a01, tx], axis=-1)
    row1 = tf.stack([a10, a11, ty], axis=-1)
    return tf.stack([row0, row1], axis=-2)


def tf_transform_points(points, m):
    """Apply ``[..., 2, 3]`` affines to ``[..., J, 2]`` points."""
    import tensorflow as tf

    points = tf.convert_to_tensor(points, tf.float32)
    return tf.linalg.matvec(m[..., None, :, :2], points) + m[..., None, :, 2]


def tf_sampled_window(inverse_m, width, height, output_size: Sequence[int]):
    """The part of a ``width`` x ``height`` image (float32 scalars) that a crop made with ``inverse_m [2, 3]``
    (output -> image pixels) samples, its samples' bilinear neighbours included: ``(lo, window)``, its
    top-left corner ``[x, y]`` (float32) and ``[y, x, h, w]`` (int32, as ``tf.io.decode_and_crop_jpeg``)."""
    import tensorflow as tf

    w_out, h_out = output_size
    corners = tf.constant([[0.0, 0.0], [w_out - 1.0, 0.0], [0.0, h_out - 1.0], [w_out - 1.0, h_out - 1.0]])
    src = tf_transform_points(corners[None], inverse_m[None])[0]
    lo = tf.clip_by_value(tf.floor(tf.reduce_min(src, 0)) - 1.0, 0.0, tf.stack([width - 1.0, height - 1.0]))
    hi = tf.clip_by_value(tf.floor(tf.reduce_max(src, 0)) + 2.0, lo + 1.0, tf.stack([width, height]))
    return lo, tf.cast(tf.stack([lo[1], lo[0], hi[1] - lo[1], hi[0] - lo[0]]), tf.int32)


def tf_warp(images, inverse_m, output_size: Sequence[int], fill_value: float = 0.0,
            interpolation: str = "BILINEAR"):
    """Sample ``images [B, H, W, C]`` at ``inverse_m [B, 2, 3] @ p`` for every output pixel ``p``.

    ``inverse_m`` maps output pixel coordinates to input pixel coordinates (pixel centres at
    integers); samples outside the input read ``fill_value``.
    """
    import tensorflow as tf

    b = tf.shape(inverse_m)[0]
    flat = tf.concat([tf.reshape(inverse_m, [b, 6]), tf.zeros([b, 2], inverse_m.dtype)], axis=1)
    images = tf.convert_to_tensor(images)
    dtype = images.dtype
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32), transforms=tf.cast(flat, tf.float32),
        output_shape=tf.constant([output_size[1], output_size[0]], tf.int32),
        fill_value=tf.constant(fill_value, tf.float32), interpolation=interpolation,
        fill_mode="CONSTANT")
    return out if dtype == tf.float32 else tf.cast(out, tf.float32)


def tf_gather_warp(images, inverse_m, output_size: Sequence[int], fill_value: float = 0.0):
    """:func:`tf_warp` (bilinear, constant fill) written as four gathers, so that XLA compiles it: TF 2.21
    has no XLA kernel for ``ImageProjectiveTransformV3``. Each of a sample's four neighbours outside the
    input reads ``fill_value`` (zero padding, as ``grid_sample``); equal to :func:`tf_warp` to float
    rounding. ``images [B, H, W, C]``, ``inverse_m [B, 2, 3]`` output -> input pixels; float32 out."""
    import tensorflow as tf

    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    shape = tf.shape(x)
    b, h_in, w_in, c = shape[0], shape[1], shape[2], shape[3]
    w_out, h_out = int(output_size[0]), int(output_size[1])
    ys, xs = tf.meshgrid(tf.range(h_out, dtype=tf.float32), tf.range(w_out, dtype=tf.float32), indexing="ij")
    m = tf.cast(inverse_m, tf.float32)[:, :, :, None, None]                     # [B, 2, 3, 1, 1]
    sx = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]                         # [B, H_out, W_out]
    sy = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    flat = tf.reshape(x, [b, h_in * w_in, c])
    w_max, h_max = tf.cast(w_in - 1, tf.float32), tf.cast(h_in - 1, tf.float32)
    fill = tf.constant(fill_value, tf.float32)

    def tap(yy, xx):
        inside = (xx >= 0.0) & (xx <= w_max) & (yy >= 0.0) & (yy <= h_max)
        index = tf.cast(tf.clip_by_value(yy, 0.0, h_max), tf.int32) * w_in + \
            tf.cast(tf.clip_by_value(xx, 0.0, w_max), tf.int32)
        values = tf.gather(flat, tf.reshape(index, [b, h_out * w_out]), batch_dims=1)
        return tf.where(inside[..., None], tf.reshape(values, [b, h_out, w_out, c]), fill)

    top = (1.0 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1.0)
    bottom = (1.0 - fx) * tap(y0 + 1.0, x0) + fx * tap(y0 + 1.0, x0 + 1.0)
    return (1.0 - fy) * top + fy * bottom


def tf_crop(image, center, scale, rotation, output_size: Sequence[int]):
    """Crop one ``[H, W, C]`` image to ``[H_out, W_out, C]`` float32 with the reference affine."""
    import tensorflow as tf

    inv = tf_affine_matrix(center[None], scale[None], tf.reshape(rotation, [1]), output_size, inverse=True)
    return tf_warp(image[None], inv, output_size)[0]
