"""Run networks over the validation crops and score them: each net and, for PoseDual, the ensemble.

Example (``evaluate(cfg, nets)`` runs a whole set: see :meth:`posedual_tf.task.PoseTask.validate`):
    >>> from posedual_tf.evaluation.runner import primary
    >>> primary({"AP": 0.71, "AR": 0.75}), primary({"Mean": 88.2, "Mean@0.1": 35.0})
    (0.71, 88.2)
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import Sequence

import numpy as np
import tensorflow as tf

from posedual_tf import codec, files
from posedual_tf.progress import Progress
from posedual_tf.config import Config
from posedual_tf.data import corrupt, pipeline, sources
from posedual_tf.data.settings import EvalDataSettings
from posedual_tf.evaluation import aic, coco, mpii


def heatmaps_fn(nets: Sequence, heatmaps: codec.HeatmapCodec):
    """A compiled function ``images -> [heatmaps per net]`` with the codec's flip test. One per networks
    and codec, kept on the first network: a run validates every few epochs, and a new tf.function each
    time would trace again (and TensorFlow warns of the retracing on the console)."""
    key = (tuple(id(n) for n in nets), heatmaps)
    cached = nets[0].__dict__.setdefault("_posedual_heatmap_fns", {})
    if key not in cached:
        @tf.function(reduce_retracing=True)
        def run(images):
            return [heatmaps.network_heatmaps(net, images) for net in nets]

        cached[key] = run
    return cached[key]


def predict(heatmaps: codec.HeatmapCodec, nets: Sequence, dataset: tf.data.Dataset, total: int | None = None,
            progress: bool = True, max_batches: int = 0) -> dict[str, list[dict]]:
    """Union-24 instances per head: ``{'net1': [...], 'net2': [...], 'ensemble': [...]}``.

    Each instance: ``keypoints [24, 3]`` (image x, y, score), ``box_score``, ``area``, ``image_id``,
    ``ann_id`` (MPII: the person's index in the source json), ``center``, ``scale``, ``bbox`` (the raw box).
    ``max_batches``: stop after that many batches (0: all).
    """
    run = heatmaps_fn(nets, heatmaps)
    names = [f"net{i + 1}" for i in range(len(nets))] + (["ensemble"] if len(nets) == 2 else [])
    out: dict[str, list[dict]] = {n: [] for n in names}
    bar = Progress(total, "evaluate", "person", enabled=progress)
    for i, batch in enumerate(dataset):
        if max_batches and i >= max_batches:
            break
        hms = run(batch["image"])
        if len(nets) == 2:
            hms = list(hms) + [0.5 * (hms[0] + hms[1])]
        meta = {k: batch[k].numpy() for k in ("center", "scale", "score", "image_id", "ann_id", "area", "raw_box")}
        for name, hm in zip(names, hms):
            coords, maxvals = heatmaps.decode(hm, batch["center"], batch["scale"])
            kps = np.concatenate([coords.numpy(), maxvals.numpy()[..., None]], axis=-1)
            for b in range(kps.shape[0]):
                out[name].append({"keypoints": kps[b], "box_score": float(meta["score"][b]),
                                  "area": float(meta["area"][b]), "image_id": int(meta["image_id"][b]),
                                  "ann_id": int(meta["ann_id"][b]),
                                  "center": meta["center"][b], "scale": meta["scale"][b],
                                  "bbox": meta["raw_box"][b]})
        bar.update(int(batch["image"].shape[0]))
    bar.close()
    return out


def peak_stats(keypoints: list[np.ndarray], threshold: float) -> dict[str, float]:
    """Mean of the predicted peaks (a joint's max heatmap value, ``keypoints[..., 2]``) and the fraction
    below ``threshold``: a network that predicts background everywhere (collapse) has it near 1."""
    if not keypoints:
        return {"peak_mean": float("nan"), "peaks_below": float("nan")}
    peaks = np.stack([k[:, 2] for k in keypoints])
    return {"peak_mean": float(peaks.mean()), "peaks_below": float((peaks < threshold).mean())}


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """How one split is scored: its ground truth and the post-processing and metric settings.

    >>> from posedual_tf.evaluation.runner import ScoreSettings
    >>> from posedual_tf import config
    >>> s = ScoreSettings.from_config(config.load("coco1k_dual"), "val")
    >>> s.nms, s.oks_thre, s.pckh_at_0_1
    ('oks', 0.9, False)
    """

    #: ``data.<split>.annotations``: COCO json, MPII ``gt_valid.mat`` or AIC json.
    annotations: str
    #: ``test.in_vis_thre``, ``test.oks_thre``, ``test.nms``, ``test.oks_sigmas`` (COCO-format sets).
    in_vis_thre: float
    oks_thre: float
    nms: str
    oks_sigmas: tuple[float, ...]
    #: ``test.peak_threshold``: the low-peak statistic.
    peak_threshold: float
    #: ``fixes.pckh_at_0_1``: MPII's PCKh@0.1 at 0.1 instead of the reference's 0.11.
    pckh_at_0_1: bool

    @classmethod
    def from_config(cls, cfg: Config, split: str = "val") -> "ScoreSettings":
        t = cfg.test
        return cls(annotations=getattr(cfg.data, split).annotations, in_vis_thre=t.in_vis_thre,
                   oks_thre=t.oks_thre, nms=t.nms, oks_sigmas=tuple(t.oks_sigmas), peak_threshold=t.peak_threshold,
                   pckh_at_0_1=cfg.fixes.pckh_at_0_1)


def score(settings: ScoreSettings, src: sources.Source, instances: list[dict],
          split: str = "val") -> tuple[dict, list[dict]]:
    """Metrics of one head's union-24 instances on ``data.<split>``, and its results entries; with the
    peak statistics (:func:`peak_stats`) of the set's own joints."""
    jset = src.joint_set
    mapped = [dict(i, keypoints=jset.from_union_array(i["keypoints"])) for i in instances]
    stats, results = _score(settings, jset, mapped, split)
    return {**stats, **peak_stats([m["keypoints"] for m in mapped], settings.peak_threshold)}, results


def oks_sigmas(jset, configured: list[float]) -> np.ndarray:
    """The OKS sigmas a COCO-format joint set is scored with: ``test.oks_sigmas`` when given, else the
    set's own (COCO's 17; a custom set's from COCO's and CrowdPose's per-joint values)."""
    if configured:
        if len(configured) != jset.num_joints:
            raise ValueError(f"test.oks_sigmas: {len(configured)} values, the joint set has {jset.num_joints} "
                             f"joints ({', '.join(jset.names)})")
        return np.asarray(configured, np.float64)
    if jset.sigmas is None:
        raise ValueError(f"test.oks_sigmas: the joint set ({', '.join(jset.names)}) has no OKS sigmas for some "
                         f"joints; give one per joint, in this order (COCO's are 0.025-0.107)")
    return np.asarray(jset.sigmas, np.float64)


def _score(t: ScoreSettings, jset, mapped: list[dict], split: str) -> tuple[dict, list[dict]]:
    ann = t.annotations
    if jset.name in ("coco", "custom"):
        sigmas = oks_sigmas(jset, list(t.oks_sigmas))
        kept = coco.rescore_and_nms(mapped, t.in_vis_thre, t.oks_thre, t.nms, sigmas=sigmas)
        results = coco.to_results(kept)
        if not ann or not os.path.exists(ann):
            raise FileNotFoundError(f"data.{split}.annotations: COCO annotation file not found: {ann!r}")
        return coco.evaluate_coco(results, ann, sigmas=sigmas), results
    if jset.name == "mpii":
        gt = mpii.load_gt_mat(ann)
        preds, missing = mpii.match_by_index(mapped, gt, ann)
        stats = mpii.pckh(preds + 1.0, gt["gt"], missing, gt["headboxes"],
                          at_0_1=0.1 if t.pckh_at_0_1 else 0.11)
        stats["unpredicted_people"] = float(np.sum(missing.all(axis=1) & ~gt["missing"].all(axis=1)))
        return stats, []
    if jset.name == "aic":
        raw = files.read_json(ann, "AI Challenger's keypoint annotation file")
        by_index = {i: item["image_id"] for i, item in enumerate(raw)}
        preds: dict[str, list] = {}
        for m in mapped:
            preds.setdefault(by_index[m["image_id"]], []).append(m["keypoints"])
        return aic.aic_map(preds, raw), []
    raise ValueError(f"no evaluation for joint set {jset.name}")


def evaluate(cfg: Config, nets: Sequence, workdir: str | None = None, progress: bool = True,
             tag: str = "", split: str = "val", source: sources.Source | None = None,
             heatmaps: codec.HeatmapCodec | None = None) -> dict[str, dict]:
    """Predict on ``data.<split>`` (``val``, or ``unlabelled_eval``: the unlabelled people with their
    ground truth) and score every head; write results/metrics json to ``workdir``. ``source`` and
    ``heatmaps``: the split's open source and the run's codec (made here when not given)."""
    if workdir:       # a new or empty folder, a training workdir or an earlier evaluation's folder
        files.claim(workdir, "evaluate", accepts=("train",), setting="--output", create=False)
    # another writer there is refused before the predictions (a training run's own validation enters again)
    with files.lock_if_present(workdir, "evaluate") if workdir else contextlib.nullcontext():
        return _evaluate(cfg, nets, workdir, progress, tag, split, source, heatmaps)


def _evaluate(cfg, nets, workdir, progress, tag, split, source, heatmaps) -> dict[str, dict]:
    counter = corrupt.CorruptionCounter()
    heatmaps = heatmaps or codec.HeatmapCodec.from_config(cfg)
    ds, src = pipeline.eval_dataset(EvalDataSettings.from_config(cfg, heatmaps), counter=counter, split=split,
                                    source=source)
    per_head = predict(heatmaps, nets, ds, total=src.num_instances, progress=progress,
                       max_batches=cfg.test.max_batches)
    with (files.writing(workdir, "evaluate", accepts=("train",), setting="--output") if workdir
          else contextlib.nullcontext()):
        scoring = ScoreSettings.from_config(cfg, split)
        metrics = {}
        for name, instances in per_head.items():
            stats, results = score(scoring, src, instances, split)
            metrics[name] = stats
            if workdir and results:
                coco.write_results(results, files.own(workdir, f"results_{name}{tag}.json", "evaluate"))
        n_seen = len(next(iter(per_head.values()))) if per_head else 0
        expected = src.num_instances
        metrics["_counts"] = {"instances": n_seen, "expected": expected, "corrupt": counter.summary()}
        if counter.total():
            print(f"evaluation: {counter.total()} of {expected} people skipped: their records failed to parse or decode "
                  f"(by shard: {counter.summary()['by_shard']})", file=sys.stderr)
        if workdir:
            files.write_json_atomic(files.own(workdir, f"metrics{tag}.json", "evaluate"), metrics)
    return metrics


def primary(stats: dict) -> float:
    """The model-selection number of a metrics dict: COCO/AIC AP or MPII Mean PCKh."""
    return float(stats["AP"] if "AP" in stats else stats["Mean"])


def format_table(metrics: dict[str, dict], width: int = 80) -> str:
    """Text tables (markdown), one row per head and one column per stat, the columns split over as many
    tables as keep every line within ``width`` columns (a blank line between them).

    Example:
        >>> from posedual_tf.evaluation.runner import format_table
        >>> print(format_table({"net1": {"AP": 0.5, "AR": 0.25}}))
        | head | AP | AR |
        |---|---|---|
        | net1 | 0.5000 | 0.2500 |
    """
    heads = [h for h in metrics if not h.startswith("_")]
    if not heads:
        return ""
    cols = [k for k in metrics[heads[0]] if k != "per_joint"]
    cell = {(h, c): f"{metrics[h][c]:.4f}" if metrics[h][c] <= 1.0 else f"{metrics[h][c]:.2f}"
            for h in heads for c in cols}
    first = max(len("head"), *(len(h) for h in heads)) + 3           # "| net1 " and the closing "|"
    groups, current, used = [], [], first + 1
    for c in cols:
        need = max(len(c), *(len(cell[h, c]) for h in heads)) + 3
        if current and used + need > width:
            groups.append(current)
            current, used = [], first + 1
        current.append(c)
        used += need
    groups.append(current)
    tables = []
    for group in groups:
        lines = ["| head | " + " | ".join(group) + " |", "|---" * (len(group) + 1) + "|"]
        lines += [f"| {h} | " + " | ".join(cell[h, c] for c in group) + " |" for h in heads]
        tables.append("\n".join(lines))
    return "\n\n".join(tables)
