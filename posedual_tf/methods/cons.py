"""PoseCons: one network teaches its own hard views (reference and MultiAugs lib/models/pose_cons.py: ``PoseCons.forward``; lib/core/loss.py: ``PoseDisLoss``)."""
from __future__ import annotations

from posedual_tf.methods.base import ConsistencyMethod


class PoseCons(ConsistencyMethod):
    """``train_step`` on ``(labelled, unlabelled)`` batches: the network's hard views are cut at its own
    joints and learn its own warped prediction. Passes in the reference order: sup, teacher, path 1..P."""

    num_nets = 1
