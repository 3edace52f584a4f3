"""COCO keypoint evaluation the reference's way (reference lib/dataset/coco.py: ``COCODataset.evaluate``, lib/nms/nms.py: ``oks_nms``).

Per instance: union-24 -> COCO-17, rescoring (box score x mean joint score above
``in_vis_thre``), OKS-NMS per image at ``oks_thre``, a COCO results json, pycocotools
``COCOeval`` with ``iouType='keypoints'``.

Example (one annotated person and a prediction on every joint):
    >>> from posedual_tf.evaluation.coco import evaluate_coco
    >>> import json, os, tempfile
    >>> kp = [[100.0 + 5 * j, 50.0 + 10 * j] for j in range(17)]
    >>> person = {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [v for x, y in kp for v in (x, y, 2)],
    ...           "num_keypoints": 17, "area": 20000.0, "bbox": [90, 40, 100, 200], "iscrowd": 0}
    >>> path = os.path.join(tempfile.mkdtemp(), "gt.json")
    >>> with open(path, "w") as f:
    ...     json.dump({"images": [{"id": 1, "width": 640, "height": 480}], "annotations": [person],
    ...                "categories": [{"id": 1, "name": "person"}]}, f)
    >>> result = {"image_id": 1, "category_id": 1, "keypoints": [v for x, y in kp for v in (x, y, 0.9)], "score": 0.9}
    >>> round(evaluate_coco([result], path)["AP"], 6)
    1.0
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

from posedual_tf import files, joints as joint_sets

STAT_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
SIGMAS = np.array(joint_sets.COCO_SIGMAS)


def oks_iou(g: np.ndarray, d: np.ndarray, area_g: float, area_d: np.ndarray, sigmas=SIGMAS,
            in_vis_thre: float | None = None) -> np.ndarray:
    """OKS of keypoints ``g`` (flat ``[K*3]``) against each row of ``d`` ``[N, K*3]``, as the reference NMS.

    ``e_k = d_k^2 / ((2 sigma_k)^2 * ((area_g + area_d) / 2 + eps) * 2)``; the mean of ``exp(-e)``
    over all joints (or over those whose scores pass ``in_vis_thre`` in both, when given).
    """
    var = (2 * np.asarray(sigmas)) ** 2
    g = np.asarray(g, np.float64).reshape(-1, 3)
    d = np.asarray(d, np.float64).reshape(len(d), -1, 3)
    dx = d[:, :, 0] - g[None, :, 0]
    dy = d[:, :, 1] - g[None, :, 1]
    e = (dx ** 2 + dy ** 2) / var[None] / ((area_g + np.asarray(area_d)[:, None]) / 2 + np.spacing(1)) / 2
    if in_vis_thre is not None:
        keep = (g[None, :, 2] > in_vis_thre) & (d[:, :, 2] > in_vis_thre)
        return np.array([np.mean(np.exp(-row[k])) if k.any() else 0.0 for row, k in zip(e, keep)])
    return np.mean(np.exp(-e), axis=1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thresh: float,
            sigmas=SIGMAS) -> list[int]:
    """Greedy OKS-NMS: indices kept, best score first (drop OKS > ``thresh`` with a kept one)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    kps = np.asarray(keypoints).reshape(len(order), -1)
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        if not rest.size:
            break
        ovr = oks_iou(kps[i], kps[rest], areas[i], np.asarray(areas)[rest], sigmas)
        order = rest[ovr <= thresh]
    return keep


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thresh: float,
                 sigmas=SIGMAS, max_dets: int = 20) -> list[int]:
    """Soft-OKS-NMS: after each pick the others' scores decay by ``exp(-oks^2 / 0.5)``; a candidate
    whose OKS with a kept instance exceeds ``thresh`` *and* whose decayed score is below 1e-3 is
    dropped. Returns up to ``max_dets`` kept indices, highest (decayed) score first."""
    scores = np.asarray(scores, np.float64).copy()
    kps = np.asarray(keypoints).reshape(len(scores), -1)
    remaining = list(range(len(scores)))
    keep: list[int] = []
    while remaining and len(keep) < max_dets:
        remaining.sort(key=lambda k: (-scores[k], k))
        i = remaining.pop(0)
        keep.append(int(i))
        if remaining:
            idx = np.array(remaining)
            ovr = oks_iou(kps[i], kps[idx], areas[i], np.asarray(areas)[idx], sigmas)
            scores[idx] *= np.exp(-(ovr ** 2) / 0.5)
            remaining = [k for k, o in zip(remaining, ovr) if not (o > thresh and scores[k] < 1e-3)]
    return keep


def rescore_and_nms(instances: Sequence[dict], in_vis_thre: float, oks_thre: float, nms: str = "oks",
                    sigmas=SIGMAS) -> list[dict]:
    """Reference rescoring then per-image NMS.

    Each instance: ``keypoints [17, 3]`` (x, y, maxval), ``box_score``, ``area``, ``image_id``, and
    optionally ``center``, ``scale``, ``bbox``. Returns the kept instances with ``score`` set.
    """
    by_image: dict[int, list[dict]] = {}
    for inst in instances:
        kp = np.asarray(inst["keypoints"], np.float64)
        vis = kp[:, 2] > in_vis_thre
        kpt_score = kp[vis, 2].mean() if vis.any() else 0.0
        item = dict(inst, score=float(kpt_score * inst.get("box_score", 1.0)))
        by_image.setdefault(int(inst["image_id"]), []).append(item)
    kept = []
    for items in by_image.values():
        if nms == "none" or len(items) == 1:
            kept.extend(items)
            continue
        kps = np.stack([np.asarray(i["keypoints"]) for i in items])
        scores = np.array([i["score"] for i in items])
        areas = np.array([i["area"] for i in items])
        fn = soft_oks_nms if nms == "soft_oks" else oks_nms
        keep = fn(kps, scores, areas, oks_thre, sigmas=sigmas)
        kept.extend(items[k] for k in keep) if keep else kept.extend(items)
    return kept


def to_results(instances: Sequence[dict]) -> list[dict]:
    """COCO results entries ``{image_id, category_id, keypoints (51), score, center, scale, bbox}``."""
    out = []
    for inst in instances:
        entry = {"image_id": int(inst["image_id"]), "category_id": 1,
                 "keypoints": [round(float(v), 3) for v in np.asarray(inst["keypoints"]).reshape(-1)],
                 "score": float(inst["score"])}
        for key in ("center", "scale", "bbox"):
            if key in inst:
                entry[key] = [float(v) for v in np.asarray(inst[key]).reshape(-1)]
        out.append(entry)
    return out


def evaluate_coco(results: Sequence[dict] | str, annotation_file: str, verbose: bool = False,
                  sigmas=None) -> dict[str, float]:
    """pycocotools keypoint evaluation of ``results`` (a list or a json path); the ten named stats.
    ``sigmas``: the joint set's OKS sigmas (None: COCO's 17); results take the file's keypoint category."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(results, str):
        results = files.read_json(results, "COCO keypoint results")
    if not results:
        return {name: 0.0 for name in STAT_NAMES}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if not verbose else contextlib.nullcontext():
        gt = COCO(annotation_file)
        kp_cats = [c["id"] for c in gt.loadCats(gt.getCatIds()) if c.get("keypoints")]
        if kp_cats and kp_cats[0] != 1:
            results = [dict(r, category_id=kp_cats[0]) for r in results]
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.useSegm = None
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def write_results(results: Sequence[dict], path: str) -> None:
    files.write_json_atomic(path, list(results), indent=None)
