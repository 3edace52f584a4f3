"""Supervised baseline: one network, labelled batches only."""
from __future__ import annotations

import tensorflow as tf

from posedual_tf.data import full_batches
from posedual_tf.methods.base import PoseMethod, heatmap_accuracy, joints_mse


class SupervisedPose(PoseMethod):
    """``train_step`` on ``{image, target, weight}`` batches: the JointsMSE loss."""

    metric_names = ("loss", "loss_pose", "acc")

    def train_step(self, data):
        net = self.nets[0]
        data = self.unwrap(data)
        people = full_batches.people(data)
        with tf.GradientTape() as tape, self.group_context(data):
            pred = net(data["image"], training=True)
            loss = joints_mse(pred, data["target"], data["weight"], people=people)
            scaled = self.scale_loss(loss)
        self.apply_loss(tape, scaled)
        acc, count = heatmap_accuracy(pred, data["target"])
        return self.record(self.batch_people(data), count, loss=loss, loss_pose=loss, acc=acc)
