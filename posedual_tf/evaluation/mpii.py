"""MPII PCKh (reference lib/dataset/mpii.py: ``MPIIDataset.evaluate``): per joint, the Mean over joints except pelvis and thorax.

Example (one person, every joint 5 px off; a 60 px head box normalises by 0.6 x 60 = 36 px, so every joint is
within 0.5 of it and none within 0.11):
    >>> from posedual_tf.evaluation.mpii import pckh
    >>> import numpy as np
    >>> gt = np.full([1, 16, 2], 100.0)
    >>> table = pckh(gt + [5.0, 0.0], gt, np.zeros([1, 16], bool), np.array([[[0.0, 0.0], [60.0, 0.0]]]))
    >>> table["Mean"], table["Mean@0.1"]
    (100.0, 0.0)
"""
from __future__ import annotations

import numpy as np

SC_BIAS = 0.6
THRESHOLD = 0.5
#: MPII joint order: rank, rkne, rhip, lhip, lkne, lank, pelvis, thorax, upper neck, head top,
#: rwri, relb, rsho, lsho, lelb, lwri.
PARTS = {"Head": (9,), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15), "Hip": (2, 3),
         "Knee": (1, 4), "Ankle": (0, 5)}


def load_gt_mat(path: str) -> dict[str, np.ndarray]:
    """``gt_valid.mat``: ``pos_gt_src [16, 2, N]``, ``jnt_missing [16, N]``, ``headboxes_src [2, 2, N]``."""
    from scipy.io import loadmat

    m = loadmat(path)
    for key in ("pos_gt_src", "jnt_missing", "headboxes_src"):
        if key not in m:
            raise ValueError(f"{path}: field '{key}' missing (expected the official gt_valid.mat)")
    return {"gt": np.transpose(m["pos_gt_src"], (2, 0, 1)), "missing": m["jnt_missing"].T.astype(bool),
            "headboxes": np.transpose(m["headboxes_src"], (2, 0, 1))}


def match_by_index(instances: list[dict], gt: dict[str, np.ndarray], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Predictions ``[N, 16, 2]`` in ``gt_valid.mat`` order, placed by each instance's ``ann_id`` (its
    index in the MPII json, kept in the records), and the joint-missing mask with the people that
    have no prediction (dropped records) marked missing, so they are left out rather than misscored."""
    n = gt["gt"].shape[0]
    preds = np.zeros((n, 16, 2))
    seen = np.zeros(n, bool)
    for inst in instances:
        i = int(inst["ann_id"])
        if not 0 <= i < n:
            raise ValueError(f"{source}: a record's person index {i} is outside the {n} people of this file; "
                             "were the records converted from the json that matches it?")
        preds[i] = inst["keypoints"][:, :2]
        seen[i] = True
    return preds, gt["missing"] | ~seen[:, None]


def pckh(preds: np.ndarray, gt: np.ndarray, missing: np.ndarray, headboxes: np.ndarray,
         threshold: float = THRESHOLD, at_0_1: float = 0.11) -> dict[str, float]:
    """PCKh of ``preds [N, 16, 2]`` against ``gt [N, 16, 2]`` (same coordinate base).

    ``headboxes [N, 2, 2]`` are the two head-box corners; the normaliser is 0.6 x their distance.
    ``at_0_1`` is the threshold reported as "Mean@0.1": 0.11 in the reference (oddity 19).
    """
    preds, gt = np.asarray(preds, np.float64), np.asarray(gt, np.float64)
    visible = ~np.asarray(missing, bool)
    head = np.linalg.norm(headboxes[:, 1] - headboxes[:, 0], axis=-1) * SC_BIAS      # [N]
    err = np.linalg.norm(preds - gt, axis=-1) / head[:, None]
    count = visible.sum(axis=0)

    def rate(thr):
        hit = ((err <= thr) & visible).sum(axis=0)
        return 100.0 * np.divide(hit, count, out=np.zeros(16), where=count > 0)

    per_joint = rate(threshold)
    use = np.ones(16, bool)
    use[[6, 7]] = False
    weights = count * use

    def mean(values):
        return float(np.sum(values * weights) / max(np.sum(weights), 1))

    out = {name: float(np.mean(per_joint[list(ids)])) for name, ids in PARTS.items()}
    out["Mean"] = mean(per_joint)
    out["Mean@0.1"] = mean(rate(at_0_1))
    out["per_joint"] = per_joint.tolist()
    return out
