"""PoseDual: two networks, each teaching the other's hard view (REFERENCE.md 5.4, PoseCoLoss)."""
from __future__ import annotations

import tensorflow as tf

from posedual_tf.methods.base import PoseMethod, collapse_indicator, hard_views, heatmap_accuracy, joints_mse


class PoseDual(PoseMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches; net 1's hard view is cut out at net 2's
    joints and learns net 2's warped prediction, and vice versa."""

    metric_names = ("loss", "loss_pose", "loss_cons", "acc", "collapse_1", "collapse_2")

    def __init__(self, cfg, nets, labelled_ids=None, **kwargs):
        super().__init__(cfg, nets, **kwargs)
        self.labelled_ids = labelled_ids

    def train_step(self, data):
        lab, unl = data
        f1, f2 = self.nets
        m = self.cfg.method
        rng = self.step_rng()
        with tf.GradientTape() as tape:
            h_s1 = f1(lab["image"], training=True)
            h_s2 = f2(lab["image"], training=True)
            with tape.stop_recording():
                h_t1 = self.teacher(f1, unl["image"])
                h_t2 = self.teacher(f2, unl["image"])
                base = unl["image_aug"] if m.rand_aug else unl["image"]
                (x1, x2), (t1, t2) = hard_views(self.cfg, rng, base, [h_t2, h_t1], [h_t1, h_t2], self.labelled_ids)
            h_c1 = f1(x1, training=True)
            h_c2 = f2(x2, training=True)
            loss_pose = joints_mse(h_s1, lab["target"], lab["weight"]) + joints_mse(h_s2, lab["target"], lab["weight"])
            loss_cons = joints_mse(h_c1, t2, unl["weight"]) + joints_mse(h_c2, t1, unl["weight"])
            loss = m.sup_weight * loss_pose + m.cons_weight * loss_cons
            scaled = self.scale_loss(loss)
        self.apply_loss(tape, scaled)
        acc, _ = heatmap_accuracy(h_s1, lab["target"])
        return self.record(loss=loss, loss_pose=loss_pose, loss_cons=loss_cons, acc=acc,
                           collapse_1=collapse_indicator(h_c1, unl["weight"]),
                           collapse_2=collapse_indicator(h_c2, unl["weight"]))
