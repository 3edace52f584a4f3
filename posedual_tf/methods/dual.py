"""PoseDual: two networks, each teaching the other's hard views (reference and MultiAugs lib/models/pose_dual.py: ``PoseCotrain.forward``;
PoseCoLoss)."""
from __future__ import annotations

from posedual_tf.methods.base import ConsistencyMethod


class PoseDual(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches; net 1's hard views are cut at net 2's joints
    and learn net 2's warped prediction, and vice versa. Passes in the reference order: sup 1, sup 2,
    teacher 1, teacher 2, net 1's paths, net 2's paths."""

    num_nets = 2

    def partner(self, n: int) -> int:
        return 1 - n
