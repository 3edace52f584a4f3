"""PoseCons: one network teaches its own hard views (REFERENCE.md 5.3, MULTIAUGS.md 2.2; PoseDisLoss)."""
from __future__ import annotations

from posedual_tf.data import hard_views
from posedual_tf.methods.base import ConsistencyMethod, joints_mse


class PoseCons(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches."""

    num_nets = 1

    def compute_losses(self, tape, lab, unl, rng) -> dict:
        """Forward passes in the reference order (sup, teacher, path 1..P) and the loss terms."""
        net, m = self.nets[0], self.cfg.method
        h_s = net(lab["image"], training=True)
        with tape.stop_recording():
            h_t = self.teacher(net, unl["image"])
            views, (target,) = hard_views.build_views(self.cfg, rng, unl, [h_t], [h_t], self.labelled_ids)
        h_c = self.hard_passes(net, [v[0] for v in views])
        pose = joints_mse(h_s, lab["target"], lab["weight"])
        cons, per_path = self.consistency(h_c, target, unl["weight"])
        # logged as the reference logs them (PoseDisLoss): loss_pose and loss_cons as they enter the loss
        return {"loss": m.sup_weight * pose + m.cons_weight * cons, "loss_pose": m.sup_weight * pose,
                "loss_cons": cons, "sup": [h_s], "hard": [h_c], "cons_paths": per_path}
