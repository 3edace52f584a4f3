"""Where a train step's time goes: a TensorFlow profiler trace of one step, summed by category.

    python benchmarks/profile_step.py                          # PoseDual, batch 32, fp32 and bf16
    python benchmarks/profile_step.py --method multiaugs --precisions mixed_bfloat16 --trace-dir /tmp/trace

One process per precision. The step is run twice untraced (tracing, warm-up), then once under
``tf.profiler.experimental``; the trace (``.xplane.pb``, readable by TensorBoard's profile plugin when
installed) is parsed here: every TensorFlow op event on the executor threads is put in one category
(convolutions forward/backward by layer group, BatchNorm, the other network ops, warps, cutout and the
other hard-view ops, loss, optimizer, casts) and its wall time summed. The profiled process runs one op at a
time (``inter_op_parallelism_threads=1``; each op still uses both cores), so op times add up to the step:
the PoseDual step takes the same time either way on this machine (14.56 s against 14.67 s, fp32 b32).
"host / idle" is the part of the step during which no op ran (Python, dispatch, waiting).
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from train_step import VARIANTS, build_step  # noqa: E402

GROUPS = ("layer1", "layer2", "layer3", "layer4", "deconv_layers", "final_layer")


def layer_group(name: str) -> str:
    for g in GROUPS:
        if f"/{g}__" in name or f"/{g}/" in name or f"/{g}_" in name:
            return g
    return "stem (conv1, maxpool)" if re.search(r"/(conv1|bn1|maxpool)(_\d+)?/", name + "/") else "other"


def category(name: str, op_type: str) -> str:
    """One bucket per op, from its full name (scopes) and type (oneDNN's ``_MklNative*`` included)."""
    backward = name.startswith("gradient_tape/")
    if "hard_views/" in name:
        return "warp (ImageProjectiveTransformV3)" if "ImageProjective" in op_type else "cutout and other hard-view ops"
    if op_type == "Cast":
        return "casts"
    if "adam" in name.lower() or "optimizer" in name.lower():
        return "optimizer (Adam)"
    if "losses/" in name:
        return "loss (forward and gradient)"
    if "Conv2D" in op_type:
        group = layer_group(name)
        if group == "deconv_layers":
            return f"deconvolutions {'backward' if backward else 'forward'}"
        return f"convolutions {group} {'backward' if backward else 'forward'}"
    if "BatchNorm" in op_type:
        return f"BatchNorm {'backward' if backward else 'forward'} (with its fused ReLU)"
    if backward or re.match(r"(net\d|pose_|hrnet)", name):
        return "other network ops (ReLU, add, pad, pool, split/concat, their gradients)"
    return "other (metrics, argmax, teacher stop-gradient, variable reads)"


def parse_trace(trace_dir: pathlib.Path) -> dict:
    """Op wall time per category and the step's busy/idle time, from the newest ``.xplane.pb``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = max(trace_dir.rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    totals: dict[str, float] = collections.defaultdict(float)
    intervals = []
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            meta = plane.event_metadata[event.metadata_id]
            if ":" not in meta.name or "::" in meta.name:         # executor/threadpool bookkeeping
                continue
            name, op_type = meta.name.rsplit(":", 1)
            start = line.timestamp_ns * 1000 + event.offset_ps
            intervals.append((start, start + event.duration_ps))
            totals[category(name, op_type)] += event.duration_ps / 1e12
    intervals.sort()
    busy, end = 0, None
    for s, e in intervals:
        if end is None or s > end:
            busy += e - s
            end = e
        elif e > end:
            busy += e - end
            end = e
    return {"categories": dict(totals), "busy_s": busy / 1e12, "trace": str(path)}


def one(method: str, batch: int, precision: str, trace_dir: pathlib.Path) -> dict:
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    _, m, data = build_step(method, batch, precision)
    m.train_on_batch(data)
    m.train_on_batch(data)
    tf.profiler.experimental.start(str(trace_dir))
    start = time.perf_counter()
    m.train_on_batch(data)
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    out = parse_trace(trace_dir)
    out.update(method=method, batch=batch, precision=precision, step_s=wall)
    return out


def table(results: list[dict]) -> str:
    cats = sorted({c for r in results for c in r["categories"]},
                  key=lambda c: -max(r["categories"].get(c, 0) for r in results))
    head = " | ".join(f"{'fp32' if r['precision'] == 'none' else 'bf16'} s (%)" for r in results)
    rows = [f"| category | {head} |", "|---" * (len(results) + 1) + "|"]
    for c in cats:
        cells = []
        for r in results:
            v, total = r["categories"].get(c, 0.0), sum(r["categories"].values())
            cells.append(f"{v:.2f} ({100 * v / total:.1f} %)")
        rows.append(f"| {c} | " + " | ".join(cells) + " |")
    rows.append("| **sum of op times** | "
                + " | ".join(f"{sum(r['categories'].values()):.2f}" for r in results) + " |")
    rows.append("| **step wall time** (profiled) | " + " | ".join(f"{r['step_s']:.2f}" for r in results) + " |")
    rows.append("| host / idle (no op running) | "
                + " | ".join(f"{r['step_s'] - r['busy_s']:.2f} ({100 * (1 - r['busy_s'] / r['step_s']):.1f} %)"
                             for r in results) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=sorted(VARIANTS), default="dual")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precisions", nargs="+", default=["none", "mixed_bfloat16"])
    ap.add_argument("--trace-dir", type=pathlib.Path, default=None, help="keep the traces here")
    ap.add_argument("--one", metavar="PRECISION", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = args.trace_dir or pathlib.Path(tempfile.mkdtemp(prefix="posedual_profile_"))
    if args.one:
        print(json.dumps(one(args.method, args.batch, args.one, root / args.one)))
        return
    results = []
    for precision in args.precisions:
        out = subprocess.run([sys.executable, __file__, "--method", args.method, "--batch", str(args.batch),
                              "--one", precision, "--trace-dir", str(root)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"profile of {args.method} {precision} failed: {out.stderr.strip().splitlines()[-1]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{precision}: step {results[-1]['step_s']:.2f} s, trace {results[-1]['trace']}", flush=True)
    print(f"\n{args.method}, batch {args.batch}:\n")
    print(table(results))


if __name__ == "__main__":
    main()
