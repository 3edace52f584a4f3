"""PoseCons: one network teaches its own hard views (REFERENCE.md 5.3, MULTIAUGS.md 2.2; PoseDisLoss)."""
from __future__ import annotations

from posedual_tf.methods.base import ConsistencyMethod


class PoseCons(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches: the network's hard views are cut at its own
    joints and learn its own warped prediction. Passes in the reference order: sup, teacher, path 1..P."""

    num_nets = 1
