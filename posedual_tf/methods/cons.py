"""PoseCons: one network teaches its own hard view (REFERENCE.md 5.3, PoseDisLoss)."""
from __future__ import annotations

from posedual_tf.methods.base import ConsistencyMethod, hard_views, joints_mse


class PoseCons(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches."""

    metric_names = ("loss", "loss_pose", "loss_cons", "acc", "collapse_1")

    def compute_losses(self, tape, lab, unl, rng) -> dict:
        """Forward passes in the reference order (sup, teacher, hard) and the loss terms."""
        net, m = self.nets[0], self.cfg.method
        h_s = net(lab["image"], training=True)
        with tape.stop_recording():
            h_t = self.teacher(net, unl["image"])
            base = unl["image_aug"] if m.rand_aug else unl["image"]
            (x_hard,), (target,) = hard_views(self.cfg, rng, base, [h_t], [h_t], self.labelled_ids)
        h_c = net(x_hard, training=True)
        pose = joints_mse(h_s, lab["target"], lab["weight"])
        cons = joints_mse(h_c, target, unl["weight"])
        # logged as the reference logs them (PoseDisLoss): loss_pose and loss_cons as they enter the loss
        return {"loss": m.sup_weight * pose + m.cons_weight * cons, "loss_pose": m.sup_weight * pose,
                "loss_cons": cons,
                "sup": [h_s], "hard": [h_c]}
