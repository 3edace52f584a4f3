"""What one call on a concatenated batch buys over separate calls: ResNet-18 SimpleBaseline 256x192
forward + backward on P x 32 images, as P calls of 32 or as one call of P x 32.

    python benchmarks/batch_fusion.py                   # TensorFlow (this project's network), fp32 and bf16
    python benchmarks/batch_fusion.py --torch           # PyTorch (tests/torch_reference.py), CPU or CUDA

The fused schedule (``train.pass_schedule: fused``) runs a network's supervised batch and its P hard paths as
one call; this measures the convolution side of that trade on a given device without the BatchNorm
grouping (which only splits the normalisation). The median of 3 timed repeats after one warm-up.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import median_time  # noqa: E402


def tensorflow_rows(groups, batch):
    import keras
    import numpy as np
    import tensorflow as tf

    from posedual_tf.models.resnet import pose_resnet

    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(precision)
        net = pose_resnet(18)
        x = tf.constant(np.random.default_rng(0).normal(size=(groups * batch, 256, 192, 3)).astype("float32"))
        for splits in ([batch] * groups, [groups * batch]):
            @tf.function
            def step(splits=splits):
                with tf.GradientTape() as tape:
                    outs = [net(part, training=True) for part in tf.split(x, splits)]
                    loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(o, tf.float32))) for o in outs])
                return tape.gradient(loss, net.trainable_variables)[0][0, 0, 0, 0]
            rows.append(("tensorflow", "cpu", precision, len(splits), median_time(step, 3)))
    return rows


def torch_rows(groups, batch):
    import torch

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
    from torch_reference import PoseResNet

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for precision in ("float32", "bfloat16"):
        fmt = torch.channels_last if precision == "bfloat16" or device == "cuda" else torch.contiguous_format
        net = PoseResNet(18).to(device).to(memory_format=fmt).train()
        x = torch.randn(groups * batch, 3, 256, 192, device=device).contiguous(memory_format=fmt)
        for parts in (groups, 1):
            def step(parts=parts):
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                    loss = sum((o.float() ** 2).mean() for o in map(net, x.chunk(parts)))
                loss.backward()
                sync()
            rows.append(("torch", device, precision, parts, median_time(step, 3)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--groups", type=int, default=5, help="P: 5 = MultiAugs' sup + 4 paths")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    rows = (torch_rows if args.torch else tensorflow_rows)(args.groups, args.batch)
    print(f"| framework | device | precision | calls | s ({args.groups} x {args.batch} images) | fused / separate |")
    print("|---|---|---|---|---|---|")
    for i, (fw, dev, prec, calls, s) in enumerate(rows):
        ratio = f"{s / rows[i - 1][4]:.2f}" if calls == 1 else ""
        print(f"| {fw} | {dev} | {prec} | {calls} | {s:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
