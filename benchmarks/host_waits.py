"""What the per-call wait for the device costs: PoseDual steps per second through ``keras.Model.fit`` with
``train.steps_per_execution`` 1 (Keras turns the logs into numbers, and so waits for the device, after
every step) and k (once per k steps), in one run.

    python benchmarks/host_waits.py                          # demo_dual's tiny network, k in 1 4 16
    python benchmarks/host_waits.py --config coco1k_dual --batch 8 --ks 1 8

Fixed random inputs already in memory (a tf.data stream of one repeated batch), float32, no XLA, and a
callback that reads the logs as training does; two untimed fits first (tracing), then ``--steps`` timed
steps per k, best of ``--repeats``. On this CPU the device is the host, so the wait is small beside the
step; on a GPU the step is short and the wait (a round trip and the gap before the next step is queued)
is what k removes.
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo_dual")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=96, help="timed steps per k (a multiple of every k)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jit", action="store_true", help="each step compiled with XLA (train.jit_compile=true)")
    args = ap.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from posedual_tf import config, methods, monitoring
    from posedual_tf.models import builder

    cfg = config.load(args.config, [f"train.batch_size={args.batch}", "train.replica_batch=0"])
    w, h = cfg.data.image_size
    hw, hh = cfg.data.heatmap_size
    rng = np.random.default_rng(0)
    lab = {"image": rng.normal(size=(args.batch, h, w, 3)).astype("float32"),
           "target": rng.uniform(size=(args.batch, hh, hw, 24)).astype("float32"),
           "weight": np.ones((args.batch, 24), "float32")}
    unl = {"image": rng.normal(size=(args.batch, h, w, 3)).astype("float32"), "weight": np.ones((args.batch, 24), "float32")}
    ds = tf.data.Dataset.from_tensors((lab, unl)).repeat().prefetch(4)
    fit = dict(verbose=0, shuffle=False)

    class ReadsLogs(monitoring.StepCallback):           # as ScalarLogger / ProgressLine: a number per call
        def on_step(self, step, logs):
            float(logs["loss"])

    rows = []
    for k in args.ks:
        keras.utils.set_random_seed(0)
        m = methods.build_method(cfg, builder.build_networks(cfg), labelled_ids=[1, 2, 3, 4, 5, 6, 11] + list(range(14, 24)))
        m.compile(optimizer=methods.make_optimizer(cfg, 100), steps_per_execution=k, jit_compile=args.jit)
        for _ in range(2):
            m.fit(ds, epochs=1, steps_per_epoch=k * 2, callbacks=[ReadsLogs()], **fit)
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            m.fit(ds, epochs=1, steps_per_epoch=args.steps, callbacks=[ReadsLogs()], **fit)
            best = min(best, (time.perf_counter() - t) / args.steps)
        rows.append((k, best))
    print(f"{cfg.name}, batch {args.batch}, {w}x{h}, {'XLA' if args.jit else 'no XLA'}, fit over {args.steps} steps, best of {args.repeats}")
    print(f"{'steps_per_execution':>20}{'ms/step':>10}{'steps/s':>10}{'vs k=1':>8}")
    for k, t in rows:
        print(f"{k:>20}{t * 1e3:>10.2f}{1 / t:>10.1f}{rows[0][1] / t:>8.2f}")


if __name__ == "__main__":
    main()
