"""Input pipeline throughput at 256x192: labelled, mixed (labelled + unlabelled pairs) and eval, in
samples/s, against a per-sample numpy + OpenCV loop doing what the reference DataLoader does
(imread, affine, warpAffine, normalise, Gaussian targets), measured in the same run.

    python benchmarks/input_pipeline.py [--batches 30]

A "sample" of the mixed stream is one labelled + one unlabelled person (what one row of a
PoseDual batch needs).
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import replicated_coco  # noqa: E402


def reference_loop(entries, n: int) -> float:
    """Samples/s of a numpy + cv2 per-sample loop with the reference's steps (one process)."""
    import cv2

    from posedual_tf import geometry

    rng = np.random.default_rng(0)
    people = [(e.path, p) for e in entries for p in e.persons]
    start = time.perf_counter()
    for i in range(n):
        path, person = people[i % len(people)]
        img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        c, s = geometry.box_to_center_scale(person.box, 0.75)
        s = s * np.clip(rng.normal() * 0.25 + 1, 0.75, 1.25)
        r = np.clip(rng.normal() * 30, -60, 60) if rng.random() <= 0.6 else 0
        m = geometry.get_affine_transform(c, s, r, (192, 256))
        crop = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR)
        x = (crop.astype(np.float32) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        x = x.transpose(2, 0, 1)
        kp = person.keypoints
        target = np.zeros((24, 64, 48), np.float32)
        for j in range(17):
            if kp[j, 2] > 0:
                px, py = geometry.affine_transform_points(kp[j:j + 1, :2], m)[0]
                mx, my = int(px / 4 + 0.5), int(py / 4 + 0.5)
                xs, ys = np.arange(48), np.arange(64)[:, None]
                g = np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / 8.0)
                g[(np.abs(ys - my) > 6) | (np.abs(xs - mx) > 6)] = 0
                target[j] = g
    return n / (time.perf_counter() - start)


def rate(ds, batches: int, per_batch) -> float:
    it = iter(ds)
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += per_batch(next(it))
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    from posedual_tf import config
    from posedual_tf.data import pipeline
    from tfrecords_tools import coco

    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        ann, images = replicated_coco(tmp, 60)
        prefix = str(tmp / "rec")
        coco.convert(str(ann), str(images), prefix, workers=2)
        common = [f"data.labelled.records={prefix}", f"data.unlabelled.records={prefix}", f"data.val.records={prefix}",
                  "model.pretrained=none"]
        sup = config.load("coco1k_sup", common + ["data.labelled.max_instances=0"])
        dual = config.load("coco1k_dual", common + ["data.labelled.max_instances=0"])
        ds = pipeline.train_dataset(sup)
        lab = rate(ds, args.batches, lambda b: int(b["image"].shape[0]))
        ds = pipeline.train_dataset(dual)
        mixed = rate(ds, args.batches, lambda b: int(b[1]["image"].shape[0]))
        ev, _ = pipeline.eval_dataset(sup)
        evr = rate(ev.repeat(), args.batches, lambda b: int(b["image"].shape[0]))
        entries, _, _, _ = coco.build_entries(str(ann), str(images))
        ref = reference_loop(entries, 200)
        print("input pipeline at 256x192, batch 32, 2 cores (tf.data, parallel map, autotune):")
        print(f"  labelled: {lab:.1f} samples/s")
        print(f"  mixed (labelled + unlabelled pair): {mixed:.1f} samples/s")
        print(f"  eval: {evr:.1f} samples/s")
        print(f"  reference-style numpy + cv2 loop (1 process, labelled): {ref:.1f} samples/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # ours: made by mkdtemp above


if __name__ == "__main__":
    main()
