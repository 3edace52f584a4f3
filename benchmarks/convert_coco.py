"""COCO converter throughput: records/s and MB/s with 2 workers, on 4 x N real COCO images.

    python benchmarks/convert_coco.py [--copies 150] [--workers 2]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import replicated_coco  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=150)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from posedual_tf.conversion import coco

    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        ann, images = replicated_coco(tmp, args.copies)
        start = time.perf_counter()
        m = coco.convert(str(ann), str(images), str(tmp / "out" / "x"), workers=args.workers, num_shards=4)
        secs = time.perf_counter() - start
        mb = sum(s["bytes"] for s in m["shards"]) / 1e6
        print(f"coco converter, {args.workers} workers: {m['num_images']} images ({m['num_instances']} people), "
              f"{mb:.1f} MB in {secs:.2f} s -> {m['num_images'] / secs:.1f} records/s, {mb / secs:.1f} MB/s "
              f"(wall time including process start-up of the workers)")
        start = time.perf_counter()
        coco.convert(str(ann), str(images), str(tmp / "out" / "x"), workers=args.workers, num_shards=4)
        print(f"re-run over complete shards: {time.perf_counter() - start:.2f} s (all shards reused)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # ours: made by mkdtemp above


if __name__ == "__main__":
    main()
