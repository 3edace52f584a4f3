"""PoseDual: two networks, each teaching the other's hard view (REFERENCE.md 5.4, PoseCoLoss)."""
from __future__ import annotations

from posedual_tf.methods.base import ConsistencyMethod, hard_views, joints_mse


class PoseDual(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches; net 1's hard view is cut out at net 2's
    joints and learns net 2's warped prediction, and vice versa."""

    metric_names = ("loss", "loss_pose", "loss_cons", "acc", "collapse_1", "collapse_2")

    def compute_losses(self, tape, lab, unl, rng) -> dict:
        """Forward passes in the reference order (sup 1, sup 2, teacher 1, teacher 2, hard 1, hard 2)."""
        f1, f2 = self.nets
        m = self.cfg.method
        h_s1 = f1(lab["image"], training=True)
        h_s2 = f2(lab["image"], training=True)
        with tape.stop_recording():
            h_t1 = self.teacher(f1, unl["image"])
            h_t2 = self.teacher(f2, unl["image"])
            base = unl["image_aug"] if m.rand_aug else unl["image"]
            (x1, x2), (t1, t2) = hard_views(self.cfg, rng, base, [h_t2, h_t1], [h_t1, h_t2], self.labelled_ids)
        h_c1 = f1(x1, training=True)
        h_c2 = f2(x2, training=True)
        pose_1 = joints_mse(h_s1, lab["target"], lab["weight"])
        pose_2 = joints_mse(h_s2, lab["target"], lab["weight"])
        cons_1 = joints_mse(h_c1, t2, unl["weight"])       # net 1 learns net 2's warped prediction
        cons_2 = joints_mse(h_c2, t1, unl["weight"])
        pose, cons = pose_1 + pose_2, cons_1 + cons_2
        # logged as the reference logs them: loss_pose = 0.5 (net 1 + net 2) for PoseDual, loss_cons the sum
        return {"loss": m.sup_weight * pose + m.cons_weight * cons, "loss_pose": m.sup_weight * pose,
                "loss_cons": cons,
                "cons_1": cons_1, "cons_2": cons_2, "sup": [h_s1, h_s2], "hard": [h_c1, h_c2]}
