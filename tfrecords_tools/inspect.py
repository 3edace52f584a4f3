"""Summarise a converted dataset and draw some of its images with boxes and joints.

Example:
    python -m tfrecords_tools.inspect data/coco/val2017 --draw /tmp/look --limit 8
"""
from __future__ import annotations

import contextlib
import types
import os

import numpy as np

from posedual_tf import files, joints
from posedual_tf.drawing import draw_person
from posedual_tf.data import records


def drawing_name(index: int, filename: bytes) -> str:
    """The drawing of record ``index``: ``00003_pic.jpg.png``. The record's position keeps two images of
    one base name apart (``a/pic.jpg``, ``b/pic.jpg``, ``pic.png``), and only the base name of the
    record's file name is used, so that no drawing lands outside the folder."""
    base = os.path.basename(filename.decode("utf-8", "replace").replace("\\", "/")) or "image"
    base = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".") or "image"
    return f"{index:05d}_{base[:100]}.png"


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none). The dataset
    prefix is the one positional argument."""
    from absl import flags

    from posedual_tf import cli

    flags.DEFINE_string("draw", "", "folder to write PNG drawings to")
    flags.DEFINE_integer("limit", 8, "records to read and check (and draw, with --draw)", lower_bound=0)
    flags.DEFINE_bool("verify", False, "read every record; count those that do not parse or decode")
    flags.adopt_module_key_flags(cli)
    cli.only_when("limit", lambda: not flags.FLAGS.verify, "not with --verify (which reads every record)",
                  example=("--verify",))


def main(argv) -> None:
    from absl import flags

    from posedual_tf import cli

    if len(argv) != 2:
        raise cli.UsageError("expected one dataset prefix (the manifest is PREFIX.json): "
                             "python -m tfrecords_tools.inspect PREFIX [--draw DIR] [--verify]")
    args = types.SimpleNamespace(prefix=argv[1], draw=flags.FLAGS.draw, limit=flags.FLAGS.limit,
                              verify=flags.FLAGS.verify)
    manifest = records.read_manifest(args.prefix)
    jset = joints.from_manifest(manifest)
    print(f"{args.prefix}: joint set {jset.name} ({jset.num_joints} joints), "
          f"{manifest['num_images']} images, {manifest['num_instances']} people, "
          f"{manifest['num_skipped']} skipped")
    for s in manifest["shards"]:
        print(f"  {s['file']}: {s['records']} images, {s['instances']} people, {s['bytes'] / 1e6:.2f} MB")
    for reason, n in sorted(manifest.get("skipped_by_reason", {}).items()):
        print(f"  skipped: {n} x {reason}")
    from posedual_tf.data import record_index

    index = record_index.load(args.prefix, manifest)      # shards missing, truncated or miscounted: one line
    if not (args.draw or args.verify):
        return
    import cv2
    import tensorflow as tf

    # a new or empty folder, or an earlier inspect's (nothing else is replaced), one inspect at a time
    with files.writing(args.draw, "inspect", setting="--draw", what="inspect --draw") if args.draw else contextlib.nullcontext():
        _read(args, index, jset, tf, cv2)


def _read(args, index, jset, tf, cv2) -> None:
    """Read every record (``--verify``) or the first ``--limit``; draw them into ``--draw``."""
    from posedual_tf.data import record_index

    reader = record_index.RecordReader(index.paths)
    n = len(index.record_offset) if args.verify else min(args.limit, len(index.record_offset))
    bad: dict[str, int] = {}
    drawn = 0
    for i in range(n):
        path = index.paths[index.record_shard[i]]
        try:
            data = reader(index.record_shard[i], index.record_offset[i], index.record_length[i])
            r = {k: v.numpy() for k, v in records.decode_example(tf.constant(data), jset.num_joints).items()}
            img = cv2.imdecode(np.frombuffer(r["image/encoded"], np.uint8),         # the stored pixels, as the
                               cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)    # boxes and joints are
            if img is None:
                raise ValueError("undecodable image")
        except (ValueError, OSError, tf.errors.OpError):
            bad[path] = bad.get(path, 0) + 1
            continue
        if args.draw and drawn < args.limit:
            for box, kp, has in zip(r["boxes"], r["keypoints"], r["has_keypoints"]):
                draw_person(img, box, kp if has else None, jset)
            ok, png = cv2.imencode(".png", img)
            if not ok:
                raise ValueError(f"--draw: OpenCV could not encode the drawing of record {i}")
            files.write_atomic(files.own(args.draw, drawing_name(i, r["image/filename"])), png.tobytes())
            drawn += 1
    for path, count in bad.items():
        print(f"  corrupt: {count} records of {path} do not parse or decode")
    if args.draw:
        print(f"drew {drawn} images into {args.draw}")
    if args.verify:
        print(f"verified {n} records: {sum(bad.values())} corrupt")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    from posedual_tf import cli

    cli.run(main, define_flags)
