"""Train-step throughput and peak memory: Supervised, PoseCons, PoseDual and the MultiAugs dual step
(4 paths: JC, JO, JOCO, JCCM) with ResNet-18 at 256x192.

    python benchmarks/train_step.py                    # every method x batch {32, 8} x {fp32, bf16}
    python benchmarks/train_step.py --one dual 32 mixed_bfloat16 --steps 3
    python benchmarks/train_step.py --methods dual multiaugs --batches 32

Each combination runs in its own process (clean precision policy and peak RSS). Images/s counts the
labelled batch for Supervised and the unlabelled batch for PoseCons/PoseDual (one image pair = one
row of the batch), on fixed random inputs, after a warm-up step that includes tracing.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import peak_rss_mb  # noqa: E402

CONFIGS = {"supervised": "coco1k_sup", "cons": "coco1k_cons", "dual": "coco1k_dual",
           "multiaugs": "coco1k_dual_multiaugs"}


def one(method: str, batch: int, precision: str, steps: int, deterministic: bool = False) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("float32" if precision == "none" else precision)
    from posedual_tf import config, methods
    from posedual_tf.models import builder

    cfg = config.load(CONFIGS[method], [f"train.mixed_precision={precision}", f"train.batch_size={batch}"])
    nets = builder.build_networks(cfg)
    m = methods.build_method(cfg, nets, labelled_ids=[1, 2, 3, 4, 5, 6, 11] + list(range(14, 24)))
    m.compile(optimizer=methods.make_optimizer(cfg, 100))
    rng = np.random.default_rng(0)
    lab = {"image": rng.normal(size=(batch, 256, 192, 3)).astype("float32"),
           "target": rng.uniform(size=(batch, 64, 48, 24)).astype("float32"),
           "weight": np.ones((batch, 24), "float32")}
    unl = {"image": rng.normal(size=(batch, 256, 192, 3)).astype("float32"),
           "weight": np.ones((batch, 24), "float32")}
    data = lab if method == "supervised" else (lab, unl)
    start = time.perf_counter()
    m.train_on_batch(data)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        m.train_on_batch(data)
    per_step = (time.perf_counter() - start) / steps
    return {"method": method, "batch": batch, "precision": precision, "deterministic": deterministic,
            "s_per_step": round(per_step, 3),
            "images_per_s": round(batch / per_step, 2), "first_step_s": round(warm, 1),
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=3, metavar=("METHOD", "BATCH", "PRECISION"))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--deterministic", action="store_true", help="with --one: enable_op_determinism()")
    ap.add_argument("--methods", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--batches", nargs="+", type=int, default=[32, 8])
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.one[2], args.steps, args.deterministic)))
        return
    print("| method | batch | precision | s/step | images/s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for method in args.methods:
        for batch in args.batches:
            for precision in ("none", "mixed_bfloat16"):
                out = subprocess.run([sys.executable, __file__, "--one", method, str(batch), precision,
                                      "--steps", str(args.steps)], capture_output=True, text=True)
                if out.returncode:
                    print(f"| {method} | {batch} | {precision} | failed: {out.stderr.strip().splitlines()[-1]} |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {method} | {batch} | {'fp32' if precision == 'none' else 'bf16'} | {r['s_per_step']} | "
                      f"{r['images_per_s']} | {r['peak_rss_mb']} |", flush=True)


if __name__ == "__main__":
    main()
