"""What each deployment format costs: file size, latency per crop (1 thread and all), and agreement with
the float32 SavedModel (mean keypoint distance, OKS AP) on real people.

    python -m posedual_tf.train --config demo_dual --set workdir=runs/demo_dual      # a trained network
    python benchmarks/export_formats.py --workdir runs/demo_dual

Exports the run's final net 1 as a SavedModel and as TFLite float32 / float16 / int8 (int8 calibrated on the
run's val records), then runs every format on crops of the real people in ../shared/data/coco (their GT
boxes). Agreement is measured against the SavedModel's own float32 keypoints (COCO-17), which stand as the
ground truth of an OKS evaluation (pycocotools, COCO's sigmas, the crop's area): the accuracy a format
loses, whatever the network's own accuracy. Prints one table; writes nothing outside a temporary folder.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def real_crops(cfg, coco_dir: pathlib.Path, limit: int):
    import cv2
    import numpy as np

    from posedual_tf import geometry

    w, h = cfg.data.image_size
    ann = json.loads((coco_dir / "test_coco.json").read_text())
    names = {im["id"]: im["file_name"] for im in ann["images"]}
    crops = []
    for a in ann["annotations"][:limit]:
        img = cv2.imread(str(coco_dir / names[a["image_id"]]))[..., ::-1]
        center, scale = geometry.box_to_center_scale(a["bbox"], w / h)
        crops.append(cv2.warpAffine(img, geometry.get_affine_transform(center, scale, 0.0, (w, h)), (w, h)))
    return np.stack(crops).astype(np.uint8)


def oks_ap(reference, predicted, w: int, h: int) -> float:
    """COCO OKS AP of ``predicted`` ``[N, 17, 2]`` (x, y crop px) against ``reference`` as ground truth."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from posedual_tf import joints

    gt = {"images": [{"id": i + 1, "width": w, "height": h} for i in range(len(reference))],
          "categories": [{"id": 1, "name": "person", "keypoints": list(joints.COCO.names), "skeleton": []}],
          "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": float(w * h),
                           "bbox": [0, 0, w, h], "num_keypoints": 17,
                           "keypoints": [v for x, y in r for v in (float(x), float(y), 2)]}
                          for i, r in enumerate(reference)]}
    dt = [{"image_id": i + 1, "category_id": 1, "score": 1.0,
           "keypoints": [v for x, y in p for v in (float(x), float(y), 1.0)]} for i, p in enumerate(predicted)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dt), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="a finished training run (its config.yaml, final/, val records)")
    ap.add_argument("--coco", default=str(REPO.parent / "shared" / "data" / "coco"), help="real COCO samples")
    ap.add_argument("--people", type=int, default=12, help="real people to run (test_coco.json has 12)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per crop")
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    from posedual_tf import config, export, joints, tflite

    cfg = config.load(os.path.join(args.workdir, "config.yaml"))
    final = os.path.join(args.workdir, "final")
    val = cfg.data.val.records
    w, h = cfg.data.image_size
    crops = real_crops(cfg, pathlib.Path(args.coco), args.people)
    tmp = tempfile.mkdtemp(prefix="export-formats-")
    try:
        saved = export.export(cfg, final, os.path.join(tmp, "saved"), net="1")
        model = tf.saved_model.load(saved)
        ref = model.signatures["serving_default"](crops=tf.constant(crops, tf.float32))["keypoints"].numpy()
        ref = ref[:, list(joints.COCO.to_union), :2]
        serve = model.signatures["serving_default"]

        def saved_model_time(threads):
            crop = tf.constant(crops[:1], tf.float32)
            serve(crops=crop)
            t = time.perf_counter()
            for _ in range(args.repeats):
                serve(crops=crop)
            return (time.perf_counter() - t) / args.repeats

        size = sum(p.stat().st_size for p in pathlib.Path(saved).rglob("*") if p.is_file())
        rows = [("SavedModel float32", size, saved_model_time(None), None, 0.0, 1.0)]
        for precision in tflite.PRECISIONS:
            path = tflite.export_tflite(cfg, final, os.path.join(tmp, "tflite"), precision=precision,
                                        calibration=val if precision == "int8" else None)
            got = tflite.run_tflite(path, crops)
            px = np.stack([got[..., 1] * w, got[..., 0] * h], -1)
            dist = float(np.linalg.norm(px - ref, axis=-1).mean())
            times = []
            for threads in (1, os.cpu_count()):
                interp = tflite.interpreter(path, threads)
                inp = interp.get_input_details()[0]["index"]
                interp.set_tensor(inp, crops[:1])
                interp.invoke()
                t = time.perf_counter()
                for _ in range(args.repeats):
                    interp.invoke()
                times.append((time.perf_counter() - t) / args.repeats)
            rows.append((f"TFLite {precision}", os.path.getsize(path), times[1], times[0], dist, oks_ap(ref, px, w, h)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # ours: made by mkdtemp above
    print(f"{cfg.name} net 1, {w}x{h} crops, {len(crops)} real people, {os.cpu_count()} cores")
    print(f"{'format':<20}{'size MB':>9}{'ms/crop all':>13}{'ms/crop 1 thr':>15}{'mean dist px':>14}{'OKS AP':>8}")
    for name, size, t_all, t_one, dist, ap_ in rows:
        one = f"{t_one * 1e3:.2f}" if t_one is not None else "-"
        print(f"{name:<20}{size / 1e6:>9.2f}{t_all * 1e3:>13.2f}{one:>15}{dist:>14.3f}{ap_:>8.3f}")


if __name__ == "__main__":
    main()
