"""How fast TensorFlow runs each kind of convolution pass of a ResNet-18 pose network, alone.

    python benchmarks/conv_kernels.py [--precision bf16|fp32] [--batch 32] [--rounds 5]

For the 3x3 convolutions of layer1..layer4 at 256x192 (C -> C) and the head's three 4x4 stride-2
deconvolutions: the forward pass, the input gradient and the weight gradient as TensorFlow computes them
(``Conv2D``, ``Conv2DBackpropInput``, ``Conv2DBackpropFilter``), and the weight gradient written as matmuls
(a 3x3 conv: nine matmuls of shifted views; a 4x4 stride-2 deconvolution: four matmuls over a space-to-depth
of the output gradient), checked equal to TensorFlow's to the precision's rounding. TFLOP/s, the median
of ``--rounds`` after two untimed calls; the dense matmul ceiling of the same run for comparison
(docs/benchmarks.md, #45).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import median_time  # noqa: E402
from train_step import matmul_tflops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import tensorflow as tf

    dt, n = (tf.bfloat16 if args.precision == "bf16" else tf.float32), args.batch
    tol = 2e-2 if args.precision == "bf16" else 1e-4
    rand = lambda shape: tf.cast(tf.random.normal(shape), dt)            # noqa: E731
    ceiling = matmul_tflops()["bfloat16" if args.precision == "bf16" else "float32"]
    print(f"{args.precision}, batch {n}; dense matmul ceiling {ceiling:.3f} TFLOP/s\n")
    print("| shape (output) | forward | input gradient | weight gradient | weight gradient as matmuls |")
    print("|---|---|---|---|---|")
    for h, w, c in [(64, 48, 64), (32, 24, 128), (16, 12, 256), (8, 6, 512)]:
        x, dy, k = rand([n, h, w, c]), rand([n, h, w, c]), rand([3, 3, c, c])

        def nine(x=x, dy=dy, h=h, w=w, c=c):
            xp, d = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), tf.reshape(dy, [-1, c])
            parts = [tf.matmul(tf.reshape(xp[:, i:i + h, j:j + w], [-1, c]), d, transpose_a=True)
                     for i in range(3) for j in range(3)]
            return tf.reshape(tf.stack(parts), [3, 3, c, c])
        passes = {
            "forward": lambda x=x, k=k: tf.nn.conv2d(x, k, 1, "SAME"),
            "input": lambda dy=dy, k=k, s=[n, h, w, c]: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=s, filter=k, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"),
            "weight": lambda x=x, dy=dy, c=c: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=[3, 3, c, c], out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"),
            "matmuls": nine}
        _row(f"conv {h}x{w}, {c} ch", passes, 2 * n * h * w * 9 * c * c, args.rounds, tol)
    for h, w, ci, co in [(8, 6, 512, 256), (16, 12, 256, 256), (32, 24, 256, 256)]:
        x, dy, k = rand([n, h, w, ci]), rand([n, 2 * h, 2 * w, co]), rand([4, 4, co, ci])

        def phases(x=x, dy=dy, h=h, w=w, ci=ci, co=co):
            s2d = tf.nn.space_to_depth(tf.pad(dy, [[0, 0], [1, 1], [1, 1], [0, 0]]), 2)    # (a, b, co) per cell
            xr = tf.reshape(x, [-1, ci])
            parts = [tf.matmul(tf.reshape(s2d[:, s:s + h, t:t + w], [-1, 4 * co]), xr, transpose_a=True)
                     for s in range(2) for t in range(2)]
            g = tf.reshape(tf.stack(parts), [2, 2, 2, 2, co, ci])                      # s, t, a, b
            return tf.reshape(tf.transpose(g, [0, 2, 1, 3, 4, 5]), [4, 4, co, ci])     # kh = 2s + a
        passes = {
            "forward": lambda x=x, k=k, s=[n, 2 * h, 2 * w, co]: tf.nn.conv2d_transpose(x, k, s, 2, "SAME"),
            "input": lambda dy=dy, k=k: tf.nn.conv2d(dy, k, 2, "SAME"),
            "weight": lambda x=x, dy=dy, ci=ci, co=co: tf.raw_ops.Conv2DBackpropFilter(
                input=dy, filter_sizes=[4, 4, co, ci], out_backprop=x, strides=[1, 2, 2, 1], padding="SAME"),
            "matmuls": phases}
        _row(f"deconv {h}x{w} -> {2 * h}x{2 * w}, {ci}->{co}", passes, 2 * n * h * w * 16 * ci * co, args.rounds, tol)


def _row(label: str, passes: dict, flops: float, rounds: int, tol: float) -> None:
    import tensorflow as tf

    fns = {name: tf.function(lambda f=f: tf.reduce_sum(tf.cast(f(), tf.float32))) for name, f in passes.items()}
    ours, theirs = tf.cast(passes["matmuls"](), tf.float32), tf.cast(passes["weight"](), tf.float32)
    error = float(tf.reduce_max(tf.abs(ours - theirs)) / tf.reduce_max(tf.abs(theirs)))
    if error > tol:
        raise SystemExit(f"{label}: the matmul weight gradient differs from TensorFlow's by {error:.2e}")
    cells = [f"{flops / median_time(fns[name], rounds, warmups=2) / 1e12:.3f}" for name in ("forward", "input", "weight", "matmuls")]
    print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
