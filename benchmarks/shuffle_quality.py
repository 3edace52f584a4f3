"""How close one training epoch's order is to a uniform permutation of the people.

Writes 150,000 people in 118,000 image records (COCO train2017's size; tiny image bytes, since only
the order is measured) in 75 shards, then, each in its own process so that peak memory is its own:

* ``index`` (the pipeline): ``pipeline.epoch_order`` + ``sources.person_fetcher``, one epoch of the
  unlabelled stream with every record read;
* ``buffer`` (before): records in file order, split into people, a 2,048-element shuffle buffer.

For each it prints the Spearman rank correlation of epoch position with file order (goal <= 0.01; the
largest |rho| over 10 epochs for the index stream), same-image pairs per batch of 32 (mean over those
epochs) against a uniform permutation's expectation (goal <= 1.5x), people/s of one epoch read through
the stream, and peak RSS.

    python benchmarks/shuffle_quality.py [--people 150000 --images 118000 --shards 75]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import peak_rss_mb  # noqa: E402


def make_dataset(prefix: str, people: int, images: int, shards: int, seed: int = 0) -> None:
    import cv2
    import tensorflow as tf

    from posedual_tf.data import records

    rng = np.random.default_rng(seed)
    counts = np.ones(images, np.int64)
    extra = rng.choice(images, people - images, replace=True)          # a few crowded images, most with one
    np.add.at(counts, extra, 1)
    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    bounds = np.linspace(0, images, shards + 1).round().astype(int)
    manifest_shards = []
    for s in range(shards):
        path = records.shard_paths(prefix, shards)[s]
        with tf.io.TFRecordWriter(path) as w:
            for i in range(bounds[s], bounds[s + 1]):
                persons = [records.Person(box=[1, 1, 4, 4], raw_box=[1, 1, 4, 4], ann_id=int(i * 100 + k),
                                          keypoints=np.ones([17, 3], np.float32)) for k in range(counts[i])]
                entry = records.ImageEntry(path="", filename=f"{i}.jpg", image_id=i, height=8, width=8, persons=persons)
                w.write(records.encode_example(entry, jpeg, 17).SerializeToString())
        part = counts[bounds[s]:bounds[s + 1]]
        manifest_shards.append({"file": os.path.basename(path), "records": int(len(part)),
                                "instances": int(part.sum()), "record_people": part.tolist()})
    with open(records.manifest_path(prefix), "w") as f:
        json.dump({"joint_set": "coco", "num_joints": 17, "num_images": images, "num_instances": people,
                   "shards": manifest_shards}, f)


def epoch_image_ids(prefix: str, method: str, seed: int = 1315) -> tuple[np.ndarray, np.ndarray, float]:
    """(file index of each person in epoch order, its image id, seconds) for one epoch."""
    import tensorflow as tf

    from posedual_tf import config
    from posedual_tf.data import pipeline, records, sources

    src = sources.open_source(config.DatasetConfig(records=prefix), "unlabelled")
    start = time.perf_counter()
    if method == "index":
        order = pipeline.epoch_order(src.num_instances, src.num_instances, seed, 0, "permutation")
        fetch = sources.person_fetcher(src)
        ds = tf.data.Dataset.from_tensor_slices(order).map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda e: (e["person"], e["image_id"]))
    else:
        def split(serialized):
            r = records.decode_example(serialized, 17)
            n = tf.shape(r["boxes"])[0]
            return tf.data.Dataset.from_tensor_slices((r["ann_ids"], tf.fill([n], r["image/id"])))

        ds = tf.data.TFRecordDataset(records.existing_shards(prefix)).flat_map(split).shuffle(2048, seed=seed)
    persons, image_ids = [], []
    for p, i in ds.batch(4096).prefetch(2):
        persons.append(p.numpy())
        image_ids.append(i.numpy())
    seconds = time.perf_counter() - start
    persons, image_ids = np.concatenate(persons), np.concatenate(image_ids)
    if method == "buffer":          # ann_ids grow in file order: their rank is the file index
        persons = np.argsort(np.argsort(persons))
    return persons, image_ids, seconds


def spearman(order: np.ndarray) -> float:
    """Rank correlation between epoch position and file index (both are permutations of 0..N-1)."""
    n = len(order)
    pos = np.arange(n, dtype=np.float64)
    return float(np.corrcoef(pos, order.astype(np.float64))[0, 1]) if n > 1 else 0.0


def same_image_pairs_per_batch(image_ids: np.ndarray, batch: int = 32) -> float:
    n = len(image_ids) // batch * batch
    b = image_ids[:n].reshape(-1, batch)
    pairs = 0
    for row in b:
        _, c = np.unique(row, return_counts=True)
        pairs += int((c * (c - 1) // 2).sum())
    return pairs / len(b)


def uniform_pairs_per_batch(file_image_ids: np.ndarray, batch: int = 32) -> float:
    """Expected same-image pairs in a batch of a uniform permutation: C(B, 2) sum n(n-1) / (N(N-1))."""
    _, n = np.unique(file_image_ids, return_counts=True)
    total = len(file_image_ids)
    return batch * (batch - 1) / 2 * float((n * (n - 1)).sum()) / (total * (total - 1))


def measure(prefix: str, method: str, epochs: int = 10) -> dict:
    """One epoch read through the stream (throughput, memory, correctness); the order statistics over
    ``epochs`` epochs for the index stream (its orders need no reading), one for the buffer."""
    persons, image_ids, seconds = epoch_image_ids(prefix, method)
    assert sorted(persons.tolist()) == list(range(len(persons))), "an epoch must hold every person once"
    file_image_ids = image_ids[np.argsort(persons)]                         # image id of each file index
    rho, pairs = [spearman(persons)], [same_image_pairs_per_batch(image_ids)]
    if method == "index":
        from posedual_tf.data import pipeline

        n = len(persons)
        for e in range(1, epochs):
            order = pipeline.epoch_order(n, n, 1315, e, "permutation").numpy()
            rho.append(spearman(order))
            pairs.append(same_image_pairs_per_batch(file_image_ids[order]))
    return {"method": method, "people": int(len(persons)), "epochs": len(rho),
            "spearman": float(np.max(np.abs(rho))), "pairs_per_batch": float(np.mean(pairs)),
            "uniform_pairs_per_batch": uniform_pairs_per_batch(file_image_ids),
            "people_per_s": len(persons) / seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=150_000)
    ap.add_argument("--images", type=int, default=118_000)
    ap.add_argument("--shards", type=int, default=75)
    ap.add_argument("--measure", choices=["index", "buffer"], help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.prefix, args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "train")
        t0 = time.perf_counter()
        make_dataset(prefix, args.people, args.images, args.shards)
        print(f"wrote {args.people} people in {args.images} records, {args.shards} shards "
              f"({time.perf_counter() - t0:.0f} s)")
        print("| stream | epochs | max abs rank corr. with file order | same-image pairs / batch of 32 (uniform) "
              "| ratio | people/s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for method in ("index", "buffer"):
            out = subprocess.run([sys.executable, __file__, "--measure", method, "--prefix", prefix],
                                 capture_output=True, text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            r = json.loads(out.stdout.strip().splitlines()[-1])
            name = "index permutation (pipeline)" if method == "index" else "file order + 2,048 buffer (before)"
            print(f"| {name} | {r['epochs']} | {r['spearman']:.4f} | {r['pairs_per_batch']:.4f} ({r['uniform_pairs_per_batch']:.4f}) | "
                  f"{r['pairs_per_batch'] / max(r['uniform_pairs_per_batch'], 1e-9):.2f}x | {r['people_per_s']:.0f} | "
                  f"{r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
