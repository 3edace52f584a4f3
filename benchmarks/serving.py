"""Latency of the exported ``predict_image`` signature: one COCO image with 5 people, fp32,
SimpleBaseline ResNet-18 at 256x192 (random weights; latency does not depend on them).

    python benchmarks/serving.py [--repeats 20] [--flip-test]
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import SHARED  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--flip-test", action="store_true")
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf

    from posedual_tf import checkpoints, config, export
    from posedual_tf.models import builder

    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        cfg = config.load("coco1k_sup")
        nets = builder.build_networks(cfg)
        checkpoints.save_nets(nets, str(tmp / "w"))
        export.export(cfg, str(tmp / "w"), str(tmp / "saved"), flip_test=args.flip_test)
        fn = tf.saved_model.load(str(tmp / "saved")).signatures["predict_image"]
        data = tf.constant((SHARED / "coco/000000196141.jpg").read_bytes())
        boxes = tf.constant(np.array([[150, 60, 120, 260], [300, 20, 80, 200], [10, 30, 100, 150],
                                      [200, 100, 60, 90], [0, 0, 400, 420]], np.float32))
        fn(image_bytes=data, boxes=boxes)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn(image_bytes=data, boxes=boxes)["keypoints"].numpy()
            times.append(time.perf_counter() - start)
        t = np.array(times) * 1000
        print(f"predict_image, ResNet-18 256x192 fp32, 5 people, flip test {'on' if args.flip_test else 'off'}: "
              f"median {np.median(t):.0f} ms, p90 {np.percentile(t, 90):.0f} ms per image (2 CPU cores)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # ours: made by mkdtemp above


if __name__ == "__main__":
    main()
