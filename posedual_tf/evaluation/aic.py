"""AI Challenger keypoint mAP (the official rule, as reference lib/dataset/ai_challenger.py: ``AIDataset.evaluate_AP``).

Per GT person: OKS against each prediction of its image over the *visible* (code 1) joints,
``exp(-d^2 / (2 delta^2 (area + 1)))`` with the AIC deltas; each GT keeps its best OKS. AP is the
mean over thresholds 0.50:0.05:0.95 of ``#(OKS > t) / sum over images of max(#gt, #pred)``.

Example (one person, every joint visible, predicted 2 px off):
    >>> from posedual_tf.evaluation.aic import aic_map
    >>> import numpy as np
    >>> joints = np.stack([np.arange(14) * 10.0 + 50, np.arange(14) * 5.0 + 40], 1)
    >>> item = {"image_id": "a", "human_annotations": {"human1": [40, 30, 200, 160]},
    ...         "keypoint_annotations": {"human1": np.concatenate([joints, np.ones([14, 1])], 1).ravel().tolist()}}
    >>> round(aic_map({"a": [joints + 2.0]}, [item])["AP .5"], 2)
    1.0
"""
from __future__ import annotations

import numpy as np

from posedual_tf.joints import AIC_DELTAS

THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def image_oks(gt_kps: np.ndarray, gt_boxes: np.ndarray, preds: np.ndarray, delta=AIC_DELTAS) -> np.ndarray:
    """``[#gt, #pred]`` OKS. ``gt_kps [G, 14, 3]`` with raw codes, boxes ``[G, 4]`` x1 y1 x2 y2."""
    delta = np.asarray(delta)
    oks = np.zeros((len(gt_kps), len(preds)))
    for i, (kp, box) in enumerate(zip(gt_kps, gt_boxes)):
        vis = kp[:, 2] == 1
        if not vis.any():
            continue
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        for j, p in enumerate(preds):
            d2 = np.sum((kp[vis, :2] - np.asarray(p)[vis, :2]) ** 2, axis=1)
            oks[i, j] = np.mean(np.exp(-d2 / 2 / delta[vis] ** 2 / (area + 1)))
    return oks


def aic_map(predictions: dict[str, list], annotations: list[dict]) -> dict[str, float]:
    """``predictions``: image_id -> list of ``[14, 2+]`` keypoints; ``annotations``: the raw AIC list."""
    best, total = [], 0
    for item in annotations:
        humans = sorted(item["keypoint_annotations"])
        gt = np.array([np.reshape(item["keypoint_annotations"][h], (14, 3)) for h in humans], np.float64)
        boxes = np.array([item["human_annotations"][h] for h in humans], np.float64)
        preds = predictions.get(item["image_id"], [])
        total += max(len(gt), len(preds))
        if len(preds) and len(gt):
            best.extend(image_oks(gt, boxes, preds).max(axis=1))
        else:
            best.extend([0.0] * len(gt))
    best = np.asarray(best)
    aps = [float(np.sum(best > t) / max(total, 1)) for t in THRESHOLDS]
    return {"AP": float(np.mean(aps)), "AP .5": aps[0], "AP .75": aps[5]}
