"""Shared pieces of the three training methods: loss, accuracy, RNG, optimiser step.

Every method is a ``keras.Model`` whose ``nets`` are the pose networks (1, or 2 for PoseDual)
and whose ``train_step`` follows REFERENCE.md sections 5-6.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from posedual_tf import codec
from posedual_tf.config import Config
from posedual_tf.data import augment


def joints_mse(pred, target, weight):
    """Reference JointsMSELoss: ``mean over B, J, pixels of 0.5 * (w * (P - T))^2`` (J = all channels).

    ``pred``/``target`` ``[B, h, w, J]``, ``weight`` ``[B, J]``; computed in float32.
    """
    pred = tf.cast(pred, tf.float32)
    target = tf.cast(target, tf.float32)
    w = tf.cast(weight, tf.float32)[:, None, None, :]
    return 0.5 * tf.reduce_mean(tf.square(w * pred - w * target))


def heatmap_accuracy(pred, target, threshold: float = 0.5):
    """The reference training accuracy (logs only; its (h/10, w/10) normaliser swap kept).

    Returns (average over joints with a valid target, number of such joints).
    """
    shape = tf.shape(pred)
    h, w = shape[1], shape[2]
    p, _ = codec.argmax_coords(pred)
    g, _ = codec.argmax_coords(target)
    norm = tf.cast(tf.stack([h, w]), tf.float32) / 10.0            # applied to (x, y): swapped as the reference
    valid = (g[..., 0] > 1) & (g[..., 1] > 1)
    dist = tf.norm((p - g) / norm, axis=-1)
    hit = tf.cast((dist < threshold) & valid, tf.float32)
    count = tf.reduce_sum(tf.cast(valid, tf.float32), axis=0)       # [J]
    acc_j = tf.math.divide_no_nan(tf.reduce_sum(hit, axis=0), count)
    has = tf.cast(count > 0, tf.float32)
    n = tf.reduce_sum(has)
    return tf.math.divide_no_nan(tf.reduce_sum(acc_j * has), n), n


def collapse_indicator(heatmaps, weight):
    """Mean over the supervised joints of each map's max response: near 0 means collapse."""
    peak = tf.reduce_max(tf.cast(heatmaps, tf.float32), axis=[1, 2])       # [B, J]
    w = tf.cast(weight, tf.float32)
    return tf.reduce_mean(tf.math.divide_no_nan(tf.reduce_sum(peak * w, -1), tf.reduce_sum(w, -1)))


class PoseMethod(keras.Model):
    """Base: owns the networks, the metrics, the per-step RNG and the optimiser step."""

    metric_names: tuple[str, ...] = ("loss", "loss_pose", "acc")

    def __init__(self, cfg: Config, nets: list[keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.nets = nets
        self.trackers = {n: keras.metrics.Mean(name=n) for n in self.metric_names}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Under MultiWorkerMirroredStrategy Keras's symbolic build reduces a sample batch with
        ``strategy.reduce``, which fails for dict batches; our networks and optimiser are built
        before ``fit``, so it is skipped there."""
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        outs = [net(images, training=training) for net in self.nets]
        return outs[0] if len(outs) == 1 else outs

    @staticmethod
    def unwrap(data):
        """The batch itself: ``train_on_batch`` hands ``(x, None, None)``, ``fit`` on our datasets ``x``."""
        if isinstance(data, tuple) and len(data) == 3 and data[1] is None and data[2] is None:
            return data[0]
        return data

    def step_rng(self) -> augment.StatelessRng:
        """Stateless RNG for this step and replica: reproducible, and resumes with the optimizer."""
        ctx = tf.distribute.get_replica_context()
        replica = tf.cast(ctx.replica_id_in_sync_group if ctx is not None else 0, tf.int64)
        step = tf.cast(self.optimizer.iterations, tf.int64)
        return augment.StatelessRng(tf.stack([tf.constant(self.cfg.train.seed, tf.int64), step * 1024 + replica]))

    def scale_loss(self, loss):
        """The loss to differentiate (call inside the tape): divided by the replicas (gradients are
        summed across them) and multiplied by the fp16 loss scale when there is one."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return self.optimizer.scale_loss(loss / replicas)

    def apply_loss(self, tape, scaled_loss):
        """Gradients of the scaled loss and the optimiser update."""
        variables = self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))

    def record(self, batch_size, acc_count, **values) -> dict:
        """Update the running means as the reference's AverageMeters: every value weighted by the
        labelled batch size, the accuracy by its number of valid joints."""
        for name, v in values.items():
            weight = acc_count if name == "acc" else batch_size
            self.trackers[name].update_state(v, sample_weight=tf.cast(weight, tf.float32))
        logs = {name: t.result() for name, t in self.trackers.items()}
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces logs with reduce("MEAN", v, axis=0) there, which needs a leading axis
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def teacher(self, net, images):
        """A teacher pass: no gradient; train-mode BN as the reference unless fixed (oddity 4)."""
        training = not self.cfg.fixes.teacher_bn_inference
        return tf.stop_gradient(tf.cast(net(images, training=training), tf.float32))


def hard_views(cfg: Config, rng, base, cutout_teachers, teacher_maps, labelled_ids):
    """Hard inputs and their warped teacher targets (REFERENCE.md 5.2-5.4).

    Args:
      base: ``[B, H, W, 3]`` the plain unlabelled crops or their RandAugment copy.
      cutout_teachers: per hard view, the heatmaps whose argmax places its cutout boxes.
      teacher_maps: per hard view, the teacher heatmaps that become its target.
      labelled_ids: union ids of the labelled set (used by the cutout fix only).
    Returns:
      (hard images, warped targets), one of each per view; one theta per sample shared by all.
    """
    m, f = cfg.method, cfg.fixes
    views = []
    for teacher in cutout_teachers:
        x = base
        if m.mask_joint_num > 0:
            x, _ = augment.joint_cutout(rng, x, teacher, m.mask_joint_num,
                                        allowed_joints=labelled_ids if f.cutout_supervised_joints else None,
                                        swap_axes=not f.cutout_axes)
        views.append(x)
    targets = list(teacher_maps)
    if m.unsup_transform:
        theta = augment.batch_affine_theta(rng, tf.shape(base)[0], cfg.data.scale_factor, cfg.data.rot_factor,
                                           m.unsup_rot_prob)
        views = [augment.affine_grid_warp(v, theta, m.align_corners) for v in views]
        targets = [augment.affine_grid_warp(t, theta, m.align_corners) for t in targets]
    return views, targets


class ConsistencyMethod(PoseMethod):
    """Shared ``train_step`` of PoseCons and PoseDual; subclasses define :meth:`compute_losses`."""

    def __init__(self, cfg: Config, nets, labelled_ids=None, **kwargs):
        super().__init__(cfg, nets, **kwargs)
        self.labelled_ids = labelled_ids

    def compute_losses(self, tape, lab, unl, rng) -> dict:
        """Forward passes and loss terms: a dict with loss, loss_pose, loss_cons, sup [maps], hard [maps]."""
        raise NotImplementedError

    def train_step(self, data):
        lab, unl = self.unwrap(data)
        with tf.GradientTape() as tape:
            out = self.compute_losses(tape, lab, unl, self.step_rng())
            scaled = self.scale_loss(out["loss"])
        self.apply_loss(tape, scaled)
        acc, count = heatmap_accuracy(out["sup"][0], lab["target"])
        collapse = {f"collapse_{i + 1}": collapse_indicator(h, unl["weight"]) for i, h in enumerate(out["hard"])}
        return self.record(tf.shape(lab["image"])[0], count, loss=out["loss"], loss_pose=out["loss_pose"],
                           loss_cons=out["loss_cons"], acc=acc, **collapse)
