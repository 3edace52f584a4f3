"""Training batches of one shape: a short batch filled up with empty places, and a ``mask`` saying which
places hold people.

A compiled (XLA) step is compiled for one batch shape; the reference's epoch ends with a short batch
(and a damaged record makes its batch one person short), which would compile the whole step again. A
filled batch keeps the shape: its people first, then empty places (zero pixels and joints, zero
weights, ``person`` -1), and every stream's dict carries ``mask [batch]`` (1 for a person). The
methods compute each loss, BatchNorm statistic, draw and log over the people only, so a filled step
equals the step on the short batch (``tests/test_xla.py``).

Example:
    >>> from posedual_tf.data.full_batches import filled
    >>> import tensorflow as tf
    >>> ds = tf.data.Dataset.from_tensors({"image": tf.ones([2, 4, 3, 3], tf.uint8), "person": tf.constant([5, 6])})
    >>> batch = next(iter(filled(ds, 3)))
    >>> batch["mask"].numpy().tolist(), batch["person"].numpy().tolist(), tuple(batch["image"].shape)
    ([1.0, 1.0, 0.0], [5, 6, -1], (3, 4, 3, 3))
"""
from __future__ import annotations

import tensorflow as tf


def _fill(t: tf.Tensor, size: int, value) -> tf.Tensor:
    rows = size - tf.shape(t)[0]
    padded = tf.pad(t, [[0, rows]] + [[0, 0]] * (t.shape.rank - 1), constant_values=tf.cast(value, t.dtype))
    return tf.ensure_shape(padded, [size] + t.shape[1:].as_list())


def fill_batch(batch, size: int):
    """One batch (a dict, or a tuple of dicts of the same people count) filled to ``size`` places."""
    parts = batch if isinstance(batch, tuple) else (batch,)
    people = tf.shape(parts[0]["person"])[0]
    mask = tf.sequence_mask(people, size, tf.float32)
    out = tuple({**{k: _fill(v, size, -1 if k == "person" else 0) for k, v in part.items()}, "mask": mask}
                for part in parts)
    return out if isinstance(batch, tuple) else out[0]


def people(batch: dict):
    """How many people a filled batch holds (its first places), None for a batch that is not filled."""
    return None if "mask" not in batch else tf.reduce_sum(tf.cast(batch["mask"], tf.int32))


def filled(ds: tf.data.Dataset, size: int) -> tf.data.Dataset:
    """``ds`` with every batch filled to ``size`` places (:func:`fill_batch`); its shapes are static."""
    return ds.map(lambda *b: fill_batch(b if len(b) > 1 else b[0], size))
