"""PoseDual: two networks, each teaching the other's hard views (REFERENCE.md 5.4, MULTIAUGS.md 2.3;
PoseCoLoss)."""
from __future__ import annotations

from posedual_tf.data import hard_views
from posedual_tf.methods.base import ConsistencyMethod, joints_mse


class PoseDual(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches; net 1's hard views are cut at net 2's joints
    and learn net 2's warped prediction, and vice versa."""

    num_nets = 2

    def compute_losses(self, tape, lab, unl, rng) -> dict:
        """Forward passes in the reference order (sup 1, sup 2, teacher 1, teacher 2, net 1's paths,
        net 2's paths)."""
        f1, f2 = self.nets
        m = self.cfg.method
        h_s1 = f1(lab["image"], training=True)
        h_s2 = f2(lab["image"], training=True)
        with tape.stop_recording():
            h_t1 = self.teacher(f1, unl["image"])
            h_t2 = self.teacher(f2, unl["image"])
            views, (t1, t2) = hard_views.build_views(self.cfg, rng, unl, [h_t2, h_t1], [h_t1, h_t2],
                                                     self.labelled_ids)
        h_c1 = self.hard_passes(f1, [v[0] for v in views])
        h_c2 = self.hard_passes(f2, [v[1] for v in views])
        pose_1 = joints_mse(h_s1, lab["target"], lab["weight"])
        pose_2 = joints_mse(h_s2, lab["target"], lab["weight"])
        cons_1, paths_1 = self.consistency(h_c1, t2, unl["weight"])     # net 1 learns net 2's warped prediction
        cons_2, paths_2 = self.consistency(h_c2, t1, unl["weight"])
        pose, cons = pose_1 + pose_2, cons_1 + cons_2
        # logged as the reference logs them: loss_pose = 0.5 (net 1 + net 2) for PoseDual, loss_cons the sum
        return {"loss": m.sup_weight * pose + m.cons_weight * cons, "loss_pose": m.sup_weight * pose,
                "loss_cons": cons, "cons_1": cons_1, "cons_2": cons_2, "sup": [h_s1, h_s2],
                "hard": [h_c1, h_c2], "cons_paths": [a + b for a, b in zip(paths_1, paths_2)]}
