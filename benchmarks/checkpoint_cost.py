"""What a mid-epoch checkpoint costs at ResNet-18 PoseDual 256x192 (both networks, Adam state, step),
and what op determinism costs per train step.

    python benchmarks/checkpoint_cost.py [--repeats 3] [--steps 2]

Saves through the same tf.train.CheckpointManager layout training uses, into a temporary folder.
Step times come from benchmarks/train_step.py (PoseDual, batch 8, fp32) with and without
``tf.config.experimental.enable_op_determinism()``, each in its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def save_cost(repeats: int) -> dict:
    import tensorflow as tf

    from posedual_tf import checkpoints, config
    from posedual_tf.task import PoseTask

    cfg = config.load("coco1k_dual", ["model.pretrained=none"])
    model = PoseTask(cfg).build_model(steps_per_epoch=4682, labelled_ids=range(24))
    nets, optimizer = model.nets, model.optimizer
    epoch = tf.Variable(0, dtype=tf.int64)
    with tempfile.TemporaryDirectory() as tmp:
        manager = tf.train.CheckpointManager(checkpoints.training_checkpoint(nets, optimizer, epoch), tmp,
                                             max_to_keep=1)
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            path = manager.save(checkpoint_number=i + 1)
            times.append(time.perf_counter() - start)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp) if f.startswith(os.path.basename(path)))
    return {"save_s": sorted(times)[len(times) // 2], "mb": size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    cost = save_cost(args.repeats)
    print(f"checkpoint (ResNet-18 PoseDual, 2 nets + Adam + step): {cost['save_s']:.2f} s median of {args.repeats}, "
          f"{cost['mb']:.1f} MB")
    step = pathlib.Path(__file__).resolve().parent / "train_step.py"
    for det in (False, True):
        out = subprocess.run([sys.executable, str(step), "--one", "dual", "8", "none", "--steps", str(args.steps)]
                             + (["--deterministic"] if det else []), capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"PoseDual b8 fp32 step, op determinism {'on ' if det else 'off'}: {r['s_per_step']} s")


if __name__ == "__main__":
    main()
