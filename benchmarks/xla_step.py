"""XLA against no XLA for one train step, in one run: PoseDual (and optionally others) with ResNet-18 at
256x192, fp32 and bf16; step time (median of 3 after 2 untimed steps), the first step (trace + XLA
compile), and the bytes one step's batch carries to the device.

    python benchmarks/xla_step.py                       # PoseDual, batch 32, fp32 and bf16
    python benchmarks/xla_step.py --methods supervised dual --batch 8

XLA on the CPU backend compiles the same graph as on a GPU (one op registry), so this shows the step
compiles and what XLA costs or saves here; GPU times differ. Each row runs in its own process
(benchmarks/train_step.py --one ... [--jit]).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def batch_bytes(method: str, batch: int, shipped: str = "uint8") -> int:
    """Bytes of one step's input batch as the pipeline ships it (every array of the batch); ``float32``:
    as it shipped it before #28 (normalised crops, targets)."""
    import numpy as np
    import train_step

    data = train_step.fake_batches(method, batch, shipped)
    parts = data if isinstance(data, tuple) else (data,)
    return int(sum(np.asarray(v).nbytes for part in parts for v in part.values()))


def run_one(method: str, batch: int, precision: str, jit: bool) -> dict | str:
    args = [sys.executable, str(HERE / "train_step.py"), "--one", method, str(batch), precision] + (["--jit"] if jit else [])
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode:
        lines = out.stderr.strip().splitlines()
        return f"failed: {lines[-1] if lines else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["dual"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precisions", nargs="+", default=["none", "mixed_bfloat16"])
    args = ap.parse_args()
    for method in args.methods:
        before, after = batch_bytes(method, args.batch, "float32") / 1e6, batch_bytes(method, args.batch) / 1e6
        print(f"{method} batch {args.batch}: {after:.1f} MB sent to the device per step (uint8 crops, joints); "
              f"{before:.1f} MB before #28 (float32 crops and targets)")
    print("| method | batch | precision | XLA | s/step (median) | first step s (trace + compile) | batch MB to device |")
    print("|---" * 7 + "|")
    rows = []
    for method in args.methods:
        mb = batch_bytes(method, args.batch) / 1e6
        for precision in args.precisions:
            for jit in (False, True):
                r = run_one(method, args.batch, precision, jit)
                rows.append({"method": method, "precision": precision, "jit": jit, "result": r, "batch_mb": mb})
                if isinstance(r, str):
                    print(f"| {method} | {args.batch} | {precision} | {jit} | {r} | | {mb:.1f} |", flush=True)
                else:
                    print(f"| {method} | {args.batch} | {precision} | {jit} | {r['s_per_step']:.2f} | "
                          f"{r['first_step_s']:.1f} | {mb:.1f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
