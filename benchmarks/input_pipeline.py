"""Input pipeline cost per core at 256x192 against the reference's loader, measured in one run.

    python benchmarks/input_pipeline.py [--batches 20] [--reference-items 200]

For five streams, items per CPU-second (every thread of the process counted: per core) and per
second:

* labelled: one labelled person (crop, targets);
* pair: one labelled + one unlabelled person, what one row of a PoseDual batch needs;
* pair + RA: the same with the unlabelled person's RandAugment copy (coco1k_dual with rand_aug);
* labelled_device, pair_device: labelled and pair with ``data.crops_on=device`` (#43): the host reads
  and decodes the sampled window only, the step warps it; the part the step does is timed separately
  (us per batch, with and without XLA, on this CPU as the stand-in), with bytes per step and the number
  of window shapes (each one an XLA compilation).

"ours" is ``pipeline.train_dataset`` (tf.data, parallel map, the graph-only reader); "reference" is a
per-item numpy + OpenCV loop doing what the reference's DataLoader worker does (cv2.imread of the whole
image, affine, cv2.warpAffine, normalise, Gaussian targets; RandAugment with Pillow, as the references
call it), in this process. Then a per-stage table: CPU microseconds per item of each stage of ours
(cumulative pipelines, one thread, differences) and of the reference loop. The last line is one JSON
object (``labelled_per_core_ratio`` and ``pair_per_core_ratio``: ours / reference, per CPU-second;
``host_labelled_per_core_ratio`` and ``host_pair_per_core_ratio``: the same with device crops).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from common import one_thread_cpu_us, replicated_coco  # noqa: E402

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


# ------------------------------------------------------------------------------ the reference loop

class ReferenceLoop:
    """One item at a time, as a reference DataLoader worker makes it; stage times accumulate."""

    def __init__(self, entries, rand_aug: bool):
        self.people = [(e.path, p) for e in entries for p in e.persons]
        self.rng = np.random.default_rng(0)
        self.rand_aug = rand_aug
        self.stages: dict[str, float] = {}

    def _t(self, name, start):
        now = time.process_time()
        self.stages[name] = self.stages.get(name, 0.0) + now - start
        return now

    def crop(self, i):
        import cv2

        from posedual_tf import geometry

        path, person = self.people[i % len(self.people)]
        t = time.process_time()
        img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        t = self._t("decode (whole image)", t)
        c, s = geometry.box_to_center_scale(person.box, 0.75)
        s = s * np.clip(self.rng.normal() * 0.25 + 1, 0.75, 1.25)
        r = np.clip(self.rng.normal() * 30, -60, 60) if self.rng.random() <= 0.6 else 0
        m = geometry.get_affine_transform(c, s, r, (192, 256))
        crop = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR)
        self._t("warp", t)
        return crop, m, person

    def normalise(self, crop):
        t = time.process_time()
        x = ((crop.astype(np.float32) / 255 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
        self._t("normalise", t)
        return x

    def targets(self, m, person):
        from posedual_tf import geometry

        t = time.process_time()
        kp = person.keypoints
        target = np.zeros((24, 64, 48), np.float32)
        for j in range(17):
            if kp[j, 2] > 0:
                px, py = geometry.affine_transform_points(kp[j:j + 1, :2], m)[0]
                mx, my = int(px / 4 + 0.5), int(py / 4 + 0.5)
                xs, ys = np.arange(48), np.arange(64)[:, None]
                g = np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / 8.0)
                g[(np.abs(ys - my) > 6) | (np.abs(xs - mx) > 6)] = 0
                target[j] = g
        self._t("targets", t)
        return target

    def rand_augment(self, crop):
        from tests.test_randaugment import reference_ra

        t = time.process_time()
        out = crop
        for op in self.rng.integers(0, 10, 2):
            out = reference_ra(int(op), out, 10, int(self.rng.choice([-1, 1])))
        self._t("RandAugment (Pillow)", t)
        return out

    def labelled(self, i):
        crop, m, person = self.crop(i)
        return self.normalise(crop), self.targets(m, person)

    def pair(self, i):
        lab = self.labelled(i)
        crop, _, _ = self.crop(i + 7)
        out = [self.normalise(crop)]
        if self.rand_aug:
            out.append(self.normalise(self.rand_augment(crop)))
        return lab, out


def reference_rate(entries, kind: str, n: int) -> tuple[float, float, dict]:
    loop = ReferenceLoop(entries, rand_aug=kind == "pair_ra")
    make = loop.labelled if kind == "labelled" else loop.pair
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        make(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return n / cpu, n / wall, {k: v / n * 1e6 for k, v in loop.stages.items()}


# ------------------------------------------------------------------------------ ours

def rate(ds, batches: int, per_batch) -> tuple[float, float]:
    """(items per CPU-second of this process, items per second) over ``batches`` batches."""
    it = iter(ds)
    for _ in range(3):
        next(it)
    cpu, wall, n = time.process_time(), time.perf_counter(), 0
    for _ in range(batches):
        n += per_batch(next(it))
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def batch_bytes(batch) -> int:
    import tensorflow as tf

    return sum(int(t.numpy().nbytes) for t in tf.nest.flatten(batch))


def device_side(cfg, batches: int) -> dict:
    """``data.crops_on=device``: what the step does with the shipped windows (warp, channel order,
    normalise, targets: ``TrainingInputs`` compiled with XLA, on this CPU as the stand-in), in us per
    batch; bytes per step and the distinct window shapes (each one an XLA compilation) over the batches."""
    import tensorflow as tf

    from posedual_tf import codec
    from posedual_tf.data import pipeline
    from posedual_tf.data.settings import TrainDataSettings

    prepare = codec.TrainingInputs.from_config(cfg)
    step = tf.function(lambda b: tuple(prepare(p) for p in b), jit_compile=True)
    host = tf.function(lambda b: tuple(prepare(p) for p in b))
    got = list(pipeline.train_dataset(TrainDataSettings.from_config(cfg)).take(batches))
    shapes = {tuple(p["window"].shape[1:3]) for b in got for p in b}
    for b in got:                      # compile every shape first
        step(b)

    def run(fn):
        start = time.perf_counter()
        for b in got:
            tf.nest.map_structure(lambda t: t.numpy(), fn(b))
        return (time.perf_counter() - start) / len(got) * 1e6

    return {"device_us_per_batch_xla": run(step), "device_us_per_batch": run(host),
            "bytes_per_step": sum(batch_bytes(b) for b in got) / len(got), "window_shapes": len(shapes)}


def train_step_seconds(cfgs: dict, steps: int, rounds: int = 2) -> dict[str, float]:
    """Seconds per training step through ``keras.Model.fit`` on each config's own input pipeline (host
    crops against device crops: on this CPU the warp moves from the input threads into the step), the
    configs in turn ``rounds`` times, best per config; one untimed step first (tracing). Each fit starts
    the pipeline afresh, as an epoch does."""
    import keras

    from posedual_tf import methods
    from posedual_tf.data import pipeline
    from posedual_tf.data.settings import TrainDataSettings
    from posedual_tf.models import builder

    built = {}
    for name, cfg in cfgs.items():
        keras.utils.set_random_seed(0)
        m = methods.build_method(cfg, builder.build_networks(cfg), labelled_ids=[1, 2, 3, 4, 5, 6, 11] + list(range(14, 24)))
        m.compile(optimizer=methods.make_optimizer(cfg, 100), jit_compile=False)
        ds = pipeline.train_dataset(TrainDataSettings.from_config(cfg))
        m.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
        built[name] = (m, ds)
    best = {name: float("inf") for name in cfgs}
    for _ in range(rounds):
        for name, (m, ds) in built.items():
            start = time.perf_counter()
            m.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def stage_table(cfg, items: int) -> dict[str, float]:
    """CPU microseconds per item of each stage of ours: cumulative one-thread pipelines, differences."""
    import tensorflow as tf

    from posedual_tf import codec
    from posedual_tf.data import augment, pipeline, sources

    src = sources.Sources(cfg.data)
    maker = pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg))
    fetch = sources.person_fetcher(src.labelled)

    def labelled(i, stages):
        e = fetch(i)
        out = [tf.strings.length(e["encoded"])]
        if "crop" in stages:
            rng = augment.StatelessRng(tf.stack([tf.cast(i, tf.int64), 11]))
            scale, rot, flip = maker.draw_geometry(rng)
            crop, joints, vis, _, _ = maker.crop(e, scale, rot, flip)
            out.append(crop)
            if "targets" in stages:
                out += list(maker.targets(joints, vis))
            if "normalise" in stages:
                out.append(maker.normalise(crop))
            if "ra" in stages:
                out.append(augment.rand_augment(crop, rng, 2, 10))
        # every output is used (Grappler drops the stages nobody reads); the first two stages are what
        # the pipeline runs now, the next two what it ran before #28
        return tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in out])

    cumulative = {"read record + parse": (), "crop (geometry, partial JPEG decode, warp)": ("crop",),
                  "targets (before #28; now in the step)": ("crop", "targets"),
                  "normalise (before #28; now in the step)": ("crop", "targets", "normalise"),
                  "RandAugment copy": ("crop", "targets", "normalise", "ra")}
    total, previous = {}, 0.0
    for name, stages in cumulative.items():
        cost = one_thread_cpu_us(lambda: tf.data.Dataset.range(items).map(
            lambda i: labelled(i % src.labelled.num_instances, stages)), items)
        total[name], previous = cost - previous, cost
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--reference-items", type=int, default=200)
    ap.add_argument("--stage-items", type=int, default=200)
    ap.add_argument("--train-steps", type=int, default=2,
                    help="timed PoseDual R18 batch-32 steps per round with host and with device crops (0: skip)")
    args = ap.parse_args()
    from posedual_tf import config
    from posedual_tf.data import pipeline
    from posedual_tf.data.settings import TrainDataSettings
    from posedual_tf.conversion import coco

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="posedual_tf-bench-"))
    try:
        ann, images = replicated_coco(tmp, 60)
        prefix = str(tmp / "rec")
        coco.convert(str(ann), str(images), prefix, workers=2)
        common = [f"data.labelled.records={prefix}", f"data.val.records={prefix}", "model.pretrained=none",
                  "data.labelled.max_instances=0"]
        pair = common + [f"data.unlabelled.records={prefix}"]
        device = ["data.crops_on=device"]
        cfgs = {"labelled": config.load("coco1k_sup", common), "pair": config.load("coco1k_dual", pair),
                "pair_ra": config.load("coco1k_dual", pair + ["method.rand_aug=true", "method.rand_magnitude=10"]),
                "labelled_device": config.load("coco1k_sup", common + device),
                "pair_device": config.load("coco1k_dual", pair + device)}
        reference_kind = {"labelled_device": "labelled", "pair_device": "pair"}
        entries, _, _, _ = coco.build_entries(str(ann), str(images))
        results, ref_stages = {}, {}
        for kind, cfg in cfgs.items():
            per = (lambda b: int(b["person"].shape[0])) if kind.startswith("labelled") else (lambda b: int(b[1]["person"].shape[0]))
            ours = rate(pipeline.train_dataset(TrainDataSettings.from_config(cfg)), args.batches, per)
            if kind in reference_kind:                  # the same reference, measured again in this run
                ref_cpu, ref_wall, _ = reference_rate(entries, reference_kind[kind], args.reference_items)
            else:
                ref_cpu, ref_wall, stages = reference_rate(entries, kind, args.reference_items)
                ref_stages[kind] = stages
            results[kind] = {"ours_per_cpu_s": ours[0], "ours_per_s": ours[1], "ref_per_cpu_s": ref_cpu,
                             "ref_per_s": ref_wall}
        steps_s = train_step_seconds({"host": cfgs["pair"], "device": cfgs["pair_device"]},
                                     args.train_steps) if args.train_steps else {}
        cores = os.cpu_count()
        print(f"items per CPU-second (per core) and per second, 256x192, batch 32, {cores} cores:")
        print(f"  {'stream':10s} {'ours/core-s':>12s} {'ours/s':>9s} {'ref/core-s':>11s} {'ref/s':>8s} {'ratio/core':>11s}")
        for kind, r in results.items():
            print(f"  {kind:10s} {r['ours_per_cpu_s']:12.1f} {r['ours_per_s']:9.1f} {r['ref_per_cpu_s']:11.1f} "
                  f"{r['ref_per_s']:8.1f} {r['ours_per_cpu_s'] / r['ref_per_cpu_s']:11.2f}")
        print("ours, CPU us per item by stage (one thread; the labelled stream's steps):")
        stages = stage_table(cfgs["pair_ra"], args.stage_items)
        for name, us in stages.items():
            print(f"  {name:44s} {us:8.0f}")
        names = list(stages)
        print(f"  labelled item on the host: {sum(stages[n] for n in names[:4]):.0f} us before #28, "
              f"{sum(stages[n] for n in names[:2]):.0f} us now (targets and normalisation in the step)")
        print("reference loop, CPU us per item by stage:")
        for kind, stages in ref_stages.items():
            print(f"  {kind}: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
        for kind in ("labelled", "pair", "labelled_device", "pair_device"):
            r = results[kind]
            print(f"{kind}: ours / reference per core = {r['ours_per_cpu_s'] / r['ref_per_cpu_s']:.2f}")
        dev = device_side(cfgs["pair_device"], args.batches)
        host_bytes = sum(batch_bytes(b) for b in pipeline.train_dataset(
            TrainDataSettings.from_config(cfgs["pair"])).take(args.batches)) / args.batches
        print(f"data.crops_on=device, PoseDual batch 32 (both streams): the step's part "
              f"{dev['device_us_per_batch_xla'] / 1e3:.1f} ms per batch under XLA "
              f"({dev['device_us_per_batch'] / 1e3:.1f} ms without) on this CPU; "
              f"{dev['bytes_per_step'] / 1e6:.1f} MB per step shipped (host crops: {host_bytes / 1e6:.1f} MB); "
              f"{dev['window_shapes']} window shapes in {args.batches} batches")
        if steps_s:
            print(f"PoseDual R18 training step through fit, this CPU (the stand-in): {steps_s['host']:.2f} s with host "
                  f"crops, {steps_s['device']:.2f} s with device crops ({steps_s['device'] / steps_s['host']:.3f}x)")
        for pairs_per_s in (160, 320):
            need = {k: pairs_per_s / results[k]["ours_per_cpu_s"] for k in ("pair", "pair_ra")}
            print(f"cores to feed one GPU at {pairs_per_s} pairs/s: {need['pair']:.1f} (PoseDual), "
                  f"{need['pair_ra']:.1f} (with RandAugment)")
        print(json.dumps({
            "labelled_per_core_ratio": round(results["labelled"]["ours_per_cpu_s"] / results["labelled"]["ref_per_cpu_s"], 3),
            "pair_per_core_ratio": round(results["pair"]["ours_per_cpu_s"] / results["pair"]["ref_per_cpu_s"], 3),
            "pair_ra_per_core_ratio": round(results["pair_ra"]["ours_per_cpu_s"] / results["pair_ra"]["ref_per_cpu_s"], 3),
            "host_labelled_per_core_ratio": round(results["labelled_device"]["ours_per_cpu_s"]
                                                  / results["labelled_device"]["ref_per_cpu_s"], 3),
            "host_pair_per_core_ratio": round(results["pair_device"]["ours_per_cpu_s"]
                                              / results["pair_device"]["ref_per_cpu_s"], 3),
            **{k: round(v, 1) for k, v in dev.items()}, "host_crops_bytes_per_step": round(host_bytes, 1),
            **{f"train_step_s_{k}_crops": round(v, 3) for k, v in steps_s.items()},
            **{f"{k}_{m}": round(v, 1) for k, r in results.items() for m, v in r.items()}}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # ours: made by mkdtemp above


if __name__ == "__main__":
    main()
