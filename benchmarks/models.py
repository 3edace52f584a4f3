"""Inference throughput (images/s) at 256x192, batch 32, fp32 and bf16, and parameter counts, for
SimpleBaseline ResNet-18 / ResNet-50 and HRNet-W32.

    python benchmarks/models.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys


def one(name: str, precision: str, repeats: int) -> dict:
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)
    from posedual_tf.models.hrnet import pose_hrnet
    from posedual_tf.models.resnet import pose_resnet

    model = pose_hrnet(32) if name == "hrnet_w32" else pose_resnet(int(name[6:]))
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    x = tf.constant(np.random.default_rng(0).normal(size=(32, 256, 192, 3)).astype("float32"))
    run = tf.function(lambda t: model(t, training=False))
    run(x)
    start = time.perf_counter()
    for _ in range(repeats):
        run(x).numpy()
    return {"model": name, "precision": precision, "params": params,
            "images_per_s": round(32 * repeats / (time.perf_counter() - start), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.repeats)))
        return
    print("| model | params (trainable) | fp32 images/s | bf16 images/s |")
    print("|---|---|---|---|")
    for name in ("resnet18", "resnet50", "hrnet_w32"):
        rows = []
        for precision in ("float32", "mixed_bfloat16"):
            out = subprocess.run([sys.executable, __file__, "--one", name, precision, "--repeats", str(args.repeats)],
                                 capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None)
        fp, bf = rows
        print(f"| {name} | {fp['params'] if fp else '?'} | {fp['images_per_s'] if fp else 'failed'} | "
              f"{bf['images_per_s'] if bf else 'failed'} |", flush=True)


if __name__ == "__main__":
    main()
