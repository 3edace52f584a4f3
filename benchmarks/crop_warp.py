"""Where one 256x192 crop's CPU time goes, and what the warp alternatives cost, one thread.

    python benchmarks/crop_warp.py [--items 200]

Prints the whole-image JPEG decode of TensorFlow and of OpenCV, then CPU microseconds per crop (a one-thread
tf.data map over the COCO samples with random centres, scales, rotations and flips) of: the partial JPEG decode; ``ImageProjectiveTransformV3`` (what the pipeline warps
with); rounding; the channel order by a last-axis reverse against a ``[3, 3]`` permutation matmul; and
OpenCV's own 1/32-pixel fixed-point bilinear written in graph ops, which it first checks is bit-exact with
``cv2.warpAffine`` (borders, rotations and flips included). Then the labelled parser with its warp and decode
stubbed out (what the per-person geometry and the record read cost). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from common import SHARED, one_thread_cpu_us, replicated_coco  # noqa: E402

from posedual_tf import geometry  # noqa: E402

SIZE = (192, 256)   # [W, H]


def fixed_point_crop(tf, encoded, center, scale, rotation, flip):
    """A crop as ``cv2.warpAffine(..., INTER_LINEAR)`` computes it: the inverse map in float64, rounded to
    1/1024 px per row and column term, sampled at 1/32 px with integer weights, rounded at 2^-10."""
    shape = tf.io.extract_jpeg_shape(encoded)
    height, width = shape[0], shape[1]
    inv = geometry.tf_affine_matrix(center[None], scale[None], tf.reshape(rotation, [1]), SIZE, inverse=True,
                                    dtype=tf.float64)[0]
    (i00, i01, i02), (i10, i11, i12) = tf.unstack(inv[0]), tf.unstack(inv[1])
    xs, ys = tf.range(SIZE[0], dtype=tf.float64), tf.range(SIZE[1], dtype=tf.float64)

    def units(v):
        return tf.cast(tf.round(v * 1024.0), tf.int32)

    shift = tf.bitwise.right_shift
    big_x = shift(units(i01 * ys + i02)[:, None] + 16 + units(i00 * xs)[None], 5)
    big_y = shift(units(i11 * ys + i12)[:, None] + 16 + units(i10 * xs)[None], 5)
    sx, fx = shift(big_x, 5), tf.bitwise.bitwise_and(big_x, 31)
    sy, fy = shift(big_y, 5), tf.bitwise.bitwise_and(big_y, 31)
    # the reference mirrors the image first: its column q is the original's W - 1 - q
    sx, fx = tf.where(flip, width - 2 - sx, sx), tf.where(flip, 32 - fx, fx)
    x_lo = tf.clip_by_value(tf.reduce_min(sx), 0, width - 1)
    x_hi = tf.clip_by_value(tf.reduce_max(sx) + 2, x_lo + 1, width)
    y_lo = tf.clip_by_value(tf.reduce_min(sy), 0, height - 1)
    y_hi = tf.clip_by_value(tf.reduce_max(sy) + 2, y_lo + 1, height)
    window = tf.io.decode_and_crop_jpeg(encoded, tf.stack([y_lo, x_lo, y_hi - y_lo, x_hi - x_lo]), channels=3,
                                        dct_method="INTEGER_ACCURATE")
    h, w = y_hi - y_lo, x_hi - x_lo
    # one zero pixel around the window: every tap outside the image reads it (cv2's constant border)
    flat = tf.reshape(tf.bitcast(tf.pad(window, [[1, 1], [1, 1], [0, 1]]), tf.int32), [-1])
    c0, c1 = tf.clip_by_value(sx - x_lo, -1, w) + 1, tf.clip_by_value(sx - x_lo + 1, -1, w) + 1
    r0 = (tf.clip_by_value(sy - y_lo, -1, h) + 1) * (w + 2)
    r1 = (tf.clip_by_value(sy - y_lo + 1, -1, h) + 1) * (w + 2)
    taps = tf.cast(tf.bitcast(tf.gather(flat, tf.stack([r0 + c0, r0 + c1, r1 + c0, r1 + c1])), tf.uint8),
                   tf.float32)
    fx, fy = tf.cast(fx, tf.float32)[..., None], tf.cast(fy, tf.float32)[..., None]
    gx, gy = 32.0 - fx, 32.0 - fy
    # whole numbers below 2^24 throughout: float32 sums are exact
    total = taps[0] * (gx * gy) + taps[1] * (fx * gy) + taps[2] * (gx * fy) + taps[3] * (fx * fy)
    out = tf.floor((total + 512.0) * (1.0 / 1024.0))
    return tf.cast(tf.stack([out[..., 2], out[..., 1], out[..., 0]], -1), tf.uint8)     # BGR, as cv2 reads


def one_thread_cost(tf, fn, n: int) -> float:
    return one_thread_cpu_us(lambda: tf.data.Dataset.range(n).map(fn), n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()
    import cv2
    import tensorflow as tf

    files = sorted((SHARED / "coco").glob("*.jpg"))
    encoded = [f.read_bytes() for f in files]
    images = [cv2.imread(str(f)) for f in files]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(args.items):
        h, w = images[i % len(files)].shape[:2]
        crops.append((i % len(files), np.float32([w * rng.uniform(-0.1, 1.1), h * rng.uniform(-0.1, 1.1)]),
                      np.float32(np.array([1.0, 4 / 3]) * rng.uniform(0.4, 2.0)), np.float32(rng.normal() * 30),
                      bool(i % 2)))

    # the fixed-point warp against OpenCV, bit for bit
    mismatched = 0
    for k, c, s, r, flip in crops[:60]:
        src = np.ascontiguousarray(images[k][:, ::-1]) if flip else images[k]
        want = cv2.warpAffine(src, geometry.get_affine_transform(c, s, float(r), SIZE), SIZE, flags=cv2.INTER_LINEAR)
        got = fixed_point_crop(tf, tf.constant(encoded[k]), c, s, r, tf.constant(flip)).numpy()
        mismatched += int(np.any(got != want))
    print(f"fixed-point warp in graph ops: {60 - mismatched} of 60 crops bit-exact with cv2.warpAffine")

    enc = tf.constant([encoded[k] for k, *_ in crops])
    centers, scales = tf.constant([c for _, c, *_ in crops]), tf.constant([s for _, _, s, *_ in crops])
    rots, flips = tf.constant([r for *_, r, _ in crops]), tf.constant([f for *_, f in crops])
    permutation = tf.constant(np.eye(3, dtype=np.float32)[::-1])

    def affine_crop(i, finish):
        inv = geometry.tf_affine_matrix(centers[i][None], scales[i][None], rots[i][None], SIZE, inverse=True)[0]
        size = tf.cast(tf.io.extract_jpeg_shape(enc[i]), tf.float32)
        lo, window = geometry.tf_sampled_window(inv, size[1], size[0], SIZE)
        img = tf.io.decode_and_crop_jpeg(enc[i], window, channels=3, dct_method="INTEGER_ACCURATE")
        if finish is None:
            return tf.reduce_sum(tf.cast(img, tf.int32))
        inv = tf.concat([inv[:, :2], inv[:, 2:] - lo[:, None]], axis=1)
        crop = geometry.tf_warp(tf.cast(img, tf.float32)[None], inv[None], SIZE)[0]
        return tf.reduce_sum(tf.cast(finish(crop), tf.int32))

    finishes = {"partial JPEG decode": None,
                "+ ImageProjectiveTransformV3": lambda x: x,
                "+ round": tf.round,
                "+ round, channel order by reverse": lambda x: tf.round(x)[..., ::-1],
                "+ round, channel order by permutation": lambda x: tf.reshape(
                    tf.reshape(tf.round(x), [-1, 3]) @ permutation, tf.shape(x))}
    result = {"whole image, tf.io.decode_jpeg": one_thread_cost(tf, lambda i: tf.reduce_sum(tf.cast(
        tf.io.decode_jpeg(enc[i], channels=3, dct_method="INTEGER_ACCURATE")[::64, ::64], tf.int32)), args.items)}
    cv2.setNumThreads(1)
    start = time.process_time()
    for k, *_ in crops:
        cv2.imdecode(np.frombuffer(encoded[k], np.uint8), cv2.IMREAD_COLOR)
    result["whole image, cv2.imdecode"] = (time.process_time() - start) / len(crops) * 1e6
    print(f"whole-image decode, CPU us: TensorFlow {result['whole image, tf.io.decode_jpeg']:.0f}, "
          f"OpenCV {result['whole image, cv2.imdecode']:.0f}")
    print("CPU us per 256x192 crop, one thread (cumulative):")
    for name, finish in finishes.items():
        result[name] = one_thread_cost(tf, lambda i, f=finish: affine_crop(i, f), args.items)
        print(f"  {name:42s} {result[name]:8.0f}")
    name = "fixed-point warp, decode included"
    result[name] = one_thread_cost(tf, lambda i: tf.reduce_sum(tf.cast(fixed_point_crop(
        tf, enc[i], centers[i], scales[i], rots[i], flips[i]), tf.int32)), args.items)
    print(f"  {name:42s} {result[name]:8.0f}")
    result.update(parser_costs(tf, args.items))
    print(json.dumps({k: round(v, 1) for k, v in result.items()} | {"bit_exact_of_60": 60 - mismatched}))


def parser_costs(tf, items: int) -> dict[str, float]:
    """The labelled parser on real records, whole and with the warp stubbed (Grappler then drops the
    decode, whose only reader is the warp): the rest is the record read and the per-person geometry."""
    from posedual_tf import codec, config
    from posedual_tf.conversion import coco
    from posedual_tf.data import pipeline, sources

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="posedual_tf-bench-"))
    try:
        ann, images = replicated_coco(tmp, 10)
        prefix = str(tmp / "rec")
        coco.convert(str(ann), str(images), prefix, workers=1)
        cfg = config.load("coco1k_sup", [f"data.labelled.records={prefix}", "model.pretrained=none",
                                         "data.labelled.max_instances=0"])
        maker = pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg))
        source = sources.Sources(cfg.data).labelled
        fetch, parse, n = sources.person_fetcher(source), pipeline.labelled_parser(maker), source.num_instances

        def cost():
            return one_thread_cost(
                tf, lambda i: tf.reduce_sum(tf.cast(parse(fetch(i % n), i)["image"], tf.int32)), items)

        out = {"labelled parser": cost()}
        real = geometry.tf_warp
        geometry.tf_warp = lambda images, inverse_m, size, **_: tf.zeros([1, size[1], size[0], 3]) + \
            tf.reduce_sum(inverse_m)
        try:
            out["labelled parser without decode and warp"] = cost()
        finally:
            geometry.tf_warp = real
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # ours: made by mkdtemp above
    print(f"labelled parser on records, one thread: {out['labelled parser']:.0f} us per person; without the decode "
          f"and the warp {out['labelled parser without decode and warp']:.0f} us (record read, per-person geometry)")
    return out


if __name__ == "__main__":
    main()
