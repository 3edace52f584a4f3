"""What a short batch costs a compiled (XLA) step, with and without filled batches, in one run.

Without filling, the epoch's short last batch is a new shape, so XLA compiles the whole step again; with
``posedual_tf.data.full_batches`` every batch keeps the shape and BatchNorm reads a mask. For one config
it prints, each variant in its own process: the first step (trace + compile), the median step time on full
batches, and the first step on a short batch (a second compile without filling; the same compiled step with
it). Defaults: demo_dual's network (ResNet-18 x0.25, 96x64, batch 16); ``--paper`` for ResNet-18 at 256x192.

    python benchmarks/filled_batches.py [--paper] [--batch 16] [--short 2] [--config demo_dual]

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _batch(cfg, people: int, places: int | None):
    import numpy as np
    import tensorflow as tf

    from posedual_tf.data import full_batches

    w, h = cfg.data.image_size
    rng = np.random.default_rng(0)
    lab = {"image": rng.integers(0, 256, size=(people, h, w, 3)).astype("uint8"),
           "joints": (rng.uniform(size=(people, 24, 2)) * [w, h]).astype("float32"),
           "vis": (rng.uniform(size=(people, 24)) > 0.3).astype("float32"), "person": np.arange(people)}
    unl = {"image": rng.integers(0, 256, size=(people, h, w, 3)).astype("uint8"),
           "weight": np.ones((people, 24), "float32"), "person": np.arange(people)}
    batch = tuple({k: tf.constant(v) for k, v in part.items()} for part in (lab, unl))
    return batch if places is None else full_batches.fill_batch(batch, places)


def one(config: str, paper: bool, batch: int, short: int, filled: bool) -> dict:
    from posedual_tf import config as configs, methods
    from posedual_tf.models import builder

    sets = [f"train.batch_size={batch}", "train.replica_batch=0"]
    if paper:
        sets += ["data.image_size=[192,256]", "data.heatmap_size=[48,64]", "model.width_multiplier=1.0"]
    cfg = configs.load(config, sets)
    m = methods.build_method(cfg, builder.build_networks(cfg), labelled_ids=list(range(24)))
    m.compile(optimizer=methods.make_optimizer(cfg, 100), jit_compile=True)
    places = batch if filled else None

    def step(data):
        start = time.perf_counter()
        m.train_on_batch(data, return_dict=True)
        return time.perf_counter() - start

    full = _batch(cfg, batch, places)
    first = step(full)
    steady = statistics.median(step(full) for _ in range(3))
    short_first = step(_batch(cfg, short, places))
    return {"first_step_s": first, "step_s": steady, "short_batch_first_step_s": short_first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="demo_dual")
    ap.add_argument("--paper", action="store_true", help="ResNet-18 x1 at 256x192 instead of the demo's network")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--short", type=int, default=2, help="people in the short batch")
    ap.add_argument("--one", choices=["plain", "filled"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.config, args.paper, args.batch, args.short, args.one == "filled")))
        return
    rows = {}
    for variant in ("plain", "filled"):
        cmd = [sys.executable, __file__, "--one", variant, "--config", args.config, "--batch", str(args.batch),
               "--short", str(args.short)] + (["--paper"] if args.paper else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{variant}: {out.stderr.strip().splitlines()[-1]}")
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.config}{' at 256x192' if args.paper else ''}, batch {args.batch}, short batch {args.short}, XLA")
    print("| batches | first step s | step s | first short step s |")
    print("|---|---|---|---|")
    for variant, r in rows.items():
        print(f"| {variant} | {r['first_step_s']:.1f} | {r['step_s']:.3f} | {r['short_batch_first_step_s']:.1f} |")
    print(json.dumps({"config": args.config, "paper": args.paper, "batch": args.batch, "short": args.short, **rows}))


if __name__ == "__main__":
    main()
