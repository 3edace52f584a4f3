"""Several BatchNorm batches in one network call: per-group statistics, running statistics in a chosen order.

A consistency step runs each network on several batches (supervised, teacher, one per hard path), and
train-mode BatchNorm makes each call its own normalisation batch. :func:`grouped_call` runs the batches
that get gradients as one call on their concatenation while every :class:`~posedual_tf.models.layers.BatchNorm`
normalises each group with that group's own mean and variance, so outputs and gradients equal the separate
calls'. The running statistics follow ``m <- (1 - f) m + f s_g`` over the groups in order, and statistics
recorded earlier under :func:`deferred` (a teacher pass) can be inserted at any position: the reference's
order sup, teacher, path 1..P is kept although the teacher ran first.

Example (a network of one BatchNorm: each group is normalised by its own statistics):
    >>> import tensorflow as tf
    >>> from posedual_tf.models.bn_groups import grouped_call, deferred
    >>> import keras
    >>> from posedual_tf.models.layers import BatchNorm
    >>> net = keras.Sequential([keras.Input((2, 2, 1)), BatchNorm()])
    >>> labelled, view1, view2 = (tf.fill([2, 2, 2, 1], v) for v in (0.0, 5.0, 9.0))
    >>> with deferred() as teacher_stats:
    ...     teacher = net(view1, training=True)                 # running statistics untouched
    >>> float(net.layers[0].moving_mean[0])
    0.0
    >>> sup, path1, path2 = grouped_call(net, [labelled, view1, view2], insert={1: teacher_stats})
    >>> [float(tf.reduce_max(tf.abs(y))) for y in (sup, path1, path2)]    # constant groups: all 0 after BN
    [0.0, 0.0, 0.0]

:func:`replica_groups` cuts every train-mode BatchNorm batch into fixed-size groups of people, each its
own normalisation batch, as the reference's GPUs each were (``train.replica_batch``).

The schedule is read when a layer is called (at trace time inside a ``tf.function``) and is kept per
thread, since MirroredStrategy traces its replicas in threads.
"""
from __future__ import annotations

import contextlib
import threading

import tensorflow as tf

_LOCAL = threading.local()


class Schedule:
    """What the BatchNorm layers of one call do with their statistics.

    ``sizes``: the group sizes along the batch axis (None = one group). ``insert``: group index -> a
    :class:`Schedule` whose recorded statistics update the running statistics just before that group.
    ``defer``: record the batch statistics per layer in ``recorded`` instead of updating.
    """

    def __init__(self, sizes=None, insert=None, defer: bool = False):
        self.sizes = sizes
        self.insert = dict(insert or {})
        self.defer = defer
        self.recorded: dict[str, tuple] = {}


def current() -> Schedule | None:
    return getattr(_LOCAL, "schedule", None)


def groups_per_replica(batch_size: int, replica_batch: int, replicas: int) -> int:
    """How many groups of ``replica_batch`` people (``train.replica_batch``; 0 = one group) each of
    ``replicas`` replicas holds of the global ``batch_size``; ValueError naming the choices if the
    share is not a multiple."""
    share = batch_size // replicas
    if not replica_batch:
        return 1
    if batch_size % replicas or share % replica_batch:
        raise ValueError(
            f"train.replica_batch={replica_batch}: train.batch_size={batch_size} over {replicas} replicas is "
            f"{batch_size / replicas:g} people per device, not a multiple of {replica_batch}; set "
            f"train.batch_size to a multiple of {replica_batch * replicas} (one group of {replica_batch} per "
            f"reference GPU), train.replica_batch to a divisor of {share}, or train.strategy=default")
    return share // replica_batch


def group_sizes(batch, groups: int, size: int):
    """Sizes of ``groups`` consecutive groups of ``size`` people in a batch of ``batch``: full groups
    first; a short batch (a dropped corrupt record) leaves the last groups short or empty."""
    return tf.stack([tf.clip_by_value(batch - g * size, 0, size) for g in range(groups)])


def split_groups(x, groups: int, size: int):
    """``x`` cut along the batch axis by :func:`group_sizes`."""
    return tf.split(x, group_sizes(tf.shape(x)[0], groups, size), num=groups, axis=0)


@contextlib.contextmanager
def replica_groups(groups: int, size: int):
    """Context: every train-mode BatchNorm batch is cut into ``groups`` groups of ``size`` people, each
    normalised with its own statistics; the running statistics follow the first group only (as DDP's
    rank 0 keeps them). ``groups`` 1 changes nothing."""
    previous = getattr(_LOCAL, "groups", None)
    _LOCAL.groups = (groups, size) if groups > 1 else None
    try:
        yield
    finally:
        _LOCAL.groups = previous


@contextlib.contextmanager
def people_only(mask):
    """Context: every train-mode BatchNorm batch (each group of a grouped call) is a filled batch whose
    places ``mask [B]`` (1 = a person) says hold people; its statistics are those of the people alone, so
    the empty places change neither the outputs of the people nor the running statistics. ``mask``
    None changes nothing."""
    previous = getattr(_LOCAL, "mask", None)
    _LOCAL.mask = mask
    try:
        yield
    finally:
        _LOCAL.mask = previous


def _people_batch_norm(layer, x, mask):
    """``fused_batch_norm``'s training results ``(y, mean, unbiased variance)`` over the places of ``x``
    that ``mask`` marks (float32 statistics, as the fused kernel keeps them)."""
    xf = tf.cast(x, tf.float32)
    m = tf.cast(mask, tf.float32)[:, None, None, None]
    # at least one value: a replica group of empty places only gets finite outputs that nothing reads
    count = tf.maximum(tf.reduce_sum(m) * tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32), 1.0)
    masked = xf * m
    mean = tf.reduce_sum(masked, axis=[0, 1, 2]) / count          # one pass: both sums of one read of x
    var = tf.maximum(tf.reduce_sum(masked * xf, axis=[0, 1, 2]) / count - tf.square(mean), 0.0)
    scale = tf.math.rsqrt(var + layer.epsilon) * layer.gamma
    y = xf * scale + (layer.beta - mean * scale)
    return tf.cast(y, x.dtype), mean, var * count / tf.maximum(count - 1.0, 1.0)


@contextlib.contextmanager
def _active(schedule: Schedule):
    previous = current()
    _LOCAL.schedule = schedule
    try:
        yield schedule
    finally:
        _LOCAL.schedule = previous


def deferred():
    """Context: train-mode BatchNorm layers record their batch statistics instead of updating."""
    return _active(Schedule(defer=True))


def grouped_call(net, inputs, insert=None):
    """``net`` (training) on several batches as one call; returns one output per input.

    ``insert``: group index -> the ``Schedule`` of a :func:`deferred` pass whose statistics update the
    running statistics before that group's.
    """
    if len(inputs) == 1:
        return separate_calls(net, inputs, insert)
    sizes = [tf.shape(x)[0] for x in inputs]
    with _active(Schedule(sizes=sizes, insert=insert)):
        out = net(tf.concat(inputs, axis=0), training=True)
    return tf.split(out, tf.stack(sizes), num=len(inputs), axis=0)


def separate_calls(net, inputs, insert=None):
    """:func:`grouped_call`'s results and running statistics with one call per batch (each its own
    BatchNorm batch, as the reference runs them)."""
    insert = insert or {}
    outputs = []
    for i, x in enumerate(inputs):
        with _active(Schedule(insert={0: insert[i]} if i in insert else None)):
            outputs.append(net(x, training=True))
    return outputs


def train_batch_norm(layer, inputs):
    """Train-mode BatchNorm of ``layer`` (gamma, beta, moving statistics, momentum, epsilon) under the
    current schedule: the normalised output; the running statistics updated or recorded."""
    schedule = current() or Schedule()
    parts = getattr(_LOCAL, "groups", None)
    mask = getattr(_LOCAL, "mask", None)
    factor = 1.0 - layer.momentum
    fused = lambda x, avg: tf.compat.v1.nn.fused_batch_norm(
        x, layer.gamma, layer.beta, mean=layer.moving_mean, variance=layer.moving_variance,
        epsilon=layer.epsilon, data_format="NHWC", is_training=True, exponential_avg_factor=avg)
    if mask is not None:
        fused = lambda x, avg, places: _people_batch_norm(layer, x, places)
    else:
        kernel, fused = fused, lambda x, avg, places: kernel(x, avg)
    if schedule.sizes is None and not schedule.insert and not schedule.defer and parts is None and mask is None:
        # one plain batch: the kernel updates the running statistics itself
        y, mean, var = fused(inputs, factor, None)
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)
        return y
    groups = [inputs] if schedule.sizes is None else tf.split(inputs, tf.stack(schedule.sizes),
                                                             num=len(schedule.sizes), axis=0)
    outputs, stats = [], []
    for g, x in enumerate(groups):
        # exponential_avg_factor 1: the returned "running" statistics are this batch's mean and its
        # unbiased variance (PyTorch's running-variance rule); under replica groups, the first group's
        # statistics feed the running ones (a filled batch: each group with its part of the mask)
        xs = split_groups(x, *parts) if parts else [x]
        masks = [None] * len(xs) if mask is None else split_groups(mask, *parts) if parts else [mask]
        pieces = [fused(p, 1.0, m) for p, m in zip(xs, masks)]
        y = pieces[0][0] if len(pieces) == 1 else tf.concat([p[0] for p in pieces], axis=0)
        mean, var = pieces[0][1], pieces[0][2]
        outputs.append(y)
        if g in schedule.insert and layer.name in schedule.insert[g].recorded:
            stats.append(schedule.insert[g].recorded[layer.name])
        stats.append((mean, var))
    if schedule.defer:
        schedule.recorded[layer.name] = stats[0]
    else:
        mean, var = layer.moving_mean, layer.moving_variance
        for m, v in stats:
            mean = (1.0 - factor) * mean + factor * m
            var = (1.0 - factor) * var + factor * v
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)
    return outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=0)
