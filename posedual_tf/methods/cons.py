"""PoseCons: one network teaches its own hard view (REFERENCE.md 5.3, PoseDisLoss)."""
from __future__ import annotations

import tensorflow as tf

from posedual_tf.methods.base import PoseMethod, collapse_indicator, hard_views, heatmap_accuracy, joints_mse


class PoseCons(PoseMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches."""

    metric_names = ("loss", "loss_pose", "loss_cons", "acc", "collapse_1")

    def __init__(self, cfg, nets, labelled_ids=None, **kwargs):
        super().__init__(cfg, nets, **kwargs)
        self.labelled_ids = labelled_ids

    def train_step(self, data):
        lab, unl = data
        net, m = self.nets[0], self.cfg.method
        rng = self.step_rng()
        with tf.GradientTape() as tape:
            h_s = net(lab["image"], training=True)
            with tape.stop_recording():
                h_t = self.teacher(net, unl["image"])
                base = unl["image_aug"] if m.rand_aug else unl["image"]
                (x_hard,), (target,) = hard_views(self.cfg, rng, base, [h_t], [h_t], self.labelled_ids)
            h_c = net(x_hard, training=True)
            loss_pose = joints_mse(h_s, lab["target"], lab["weight"])
            loss_cons = joints_mse(h_c, target, unl["weight"])
            loss = m.sup_weight * loss_pose + m.cons_weight * loss_cons
            scaled = self.scale_loss(loss)
        self.apply_loss(tape, scaled)
        acc, _ = heatmap_accuracy(h_s, lab["target"])
        return self.record(loss=loss, loss_pose=loss_pose, loss_cons=loss_cons, acc=acc,
                           collapse_1=collapse_indicator(h_c, unl["weight"]))
