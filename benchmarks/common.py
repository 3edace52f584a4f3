"""Helpers shared by the benchmark scripts: timing, peak memory, a bigger COCO-format set from the samples."""
from __future__ import annotations

import json
import os
import pathlib
import resource
import shutil
import statistics
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("POSEDUAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats: int) -> float:
    """Seconds per call of ``fn`` (after one warm-up call)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def median_time(fn, repeats: int, warmups: int = 1) -> float:
    """The median seconds of ``repeats`` calls of ``fn``, after ``warmups`` untimed calls."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_thread_cpu_us(make_dataset, items: int) -> float:
    """CPU microseconds per element of ``make_dataset()`` (a ``tf.data`` pipeline of ``items`` elements) run on one
    thread, after 5 warm-up elements."""
    import tensorflow as tf

    opts = tf.data.Options()
    opts.threading.private_threadpool_size = 1
    opts.threading.max_intra_op_parallelism = 1
    ds = make_dataset().with_options(opts)
    for _ in ds.take(5):
        pass
    start = time.process_time()
    for _ in ds:
        pass
    return (time.process_time() - start) / items * 1e6


def replicated_coco(out: pathlib.Path, copies: int) -> tuple[pathlib.Path, pathlib.Path]:
    """A COCO-format set of ``4 * copies`` real images (hard links to copies of the shared samples)."""
    ann = json.loads((SHARED / "coco/test_coco.json").read_text())
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    new_images, new_anns = [], []
    for c in range(copies):
        for im in ann["images"]:
            name = f"{c}_{im['file_name']}"
            if not (images / name).exists():
                if c == 0:
                    shutil.copy(SHARED / "coco" / im["file_name"], images / name)
                else:
                    os.link(images / f"0_{im['file_name']}", images / name)
            new_images.append(dict(im, id=im["id"] * 1000 + c, file_name=name))
        new_anns += [dict(a, id=a["id"] * 1000 + c, image_id=a["image_id"] * 1000 + c) for a in ann["annotations"]]
    path = out / "annotations.json"
    path.write_text(json.dumps(dict(ann, images=new_images, annotations=new_anns)))
    return path, images
