"""Shard writer shared by every converter: parallel image reading, atomic resumable shards, manifest.

Images are split into contiguous shards in annotation-file order, so reading the shards in
order gives the people in the order of the source file. Each shard is written under a
temporary name and renamed when whole; a small part file beside it records what went in.
A re-run skips every shard whose part file matches the same inputs and whose bytes still hash
to what was written.
"""
from __future__ import annotations

import contextlib
import concurrent.futures as cf
from collections import Counter
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import multiprocessing
import os
import time
from typing import Sequence

import numpy as np

from posedual_tf.data import records
from posedual_tf import cli, files
from posedual_tf.files import write_json_atomic
from posedual_tf.progress import Progress
from posedual_tf.joints import JointSet

TARGET_SHARD_BYTES = 256 << 20


class ConversionError(ValueError):
    """A malformed annotation file: one line naming the file and the field."""


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_image(path: str) -> tuple[bytes | None, str, tuple[int, int] | None]:
    """Read and validate one image: (bytes, '', (h, w)) or (None, reason, None)."""
    try:
        data = files.read_bounded(path)
    except ValueError as e:              # a FIFO, a device or an oversized file
        return None, str(e), None
    except FileNotFoundError:
        return None, "missing file", None
    except OSError as e:
        return None, f"unreadable ({e.strerror})", None
    if not data:
        return None, "empty file", None
    if data[:8] != b"\x89PNG\r\n\x1a\n" and data[:2] != b"\xff\xd8":
        return None, "undecodable (not a JPEG or PNG)", None
    cli.quiet_tensorflow([])            # a pool worker imports TensorFlow here
    size = records.decoded_size(data)
    if size is None:
        return None, "undecodable (truncated or damaged: the decoder training uses cannot read it)", None
    if min(size) < 4:          # no person fits there
        return None, f"image is {size[1]}x{size[0]} px, under 4 px on a side", None
    return data, "", size


def _entry_key(entry: records.ImageEntry) -> list:
    return [entry.filename, entry.image_id, entry.height, entry.width,
            [[list(map(float, p.box)), list(map(float, p.raw_box)), float(p.score), int(p.ann_id),
              None if p.keypoints is None else np.asarray(p.keypoints, np.float32).round(4).tolist()]
             for p in entry.persons]]


def _spec_hash(entries: Sequence[records.ImageEntry], image_sizes: Sequence[int]) -> str:
    h = hashlib.sha256(f"schema{records.SCHEMA_VERSION}".encode())
    for e, size in zip(entries, image_sizes):
        h.update(json.dumps(_entry_key(e)).encode())
        h.update(str(size).encode())
    return h.hexdigest()


def write_dataset(entries: Sequence[records.ImageEntry], prefix: str, *, joint_set: JointSet,
                  sources: Sequence[str], skipped: list[dict] | None = None,
                  num_shards: int = 0, workers: int = 2, extra: dict | None = None) -> dict:
    """Write ``entries`` as sharded TFRecords plus the manifest ``PREFIX.json``; returns it.

    ``skipped`` carries items the converter already dropped (annotation-level reasons); image
    level failures are appended. ``num_shards = 0`` picks about 256 MB per shard.
    """
    check_prefix(prefix)
    owned = owned_shards(prefix, sources)
    skipped = list(skipped or [])
    entries = [e for e in entries if e.persons]
    outside = [e for e in entries if files.inside(".", e.filename) is None]
    for e in outside:            # the path rule: a file name from data is read only inside --images
        skipped.append({"image": e.filename, "image_id": e.image_id, "instances": len(e.persons),
                        "reason": "file name is absolute or leaves the images folder ('..'); not read"})
    entries = [e for e in entries if files.inside(".", e.filename) is not None]
    out_dir = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise ConversionError(f"--output {prefix}: cannot create the folder {out_dir} ({e.strerror})") from None
    sizes = [os.path.getsize(e.path) if os.path.exists(e.path) else 0 for e in entries]
    if num_shards <= 0:
        num_shards = max(1, math.ceil(sum(sizes) / TARGET_SHARD_BYTES))
    num_shards = max(1, min(num_shards, len(entries))) if entries else 1
    bounds = [round(i * len(entries) / num_shards) for i in range(num_shards + 1)]
    paths = records.shard_paths(prefix, num_shards)
    for path in paths:
        if os.path.lexists(path) and os.path.basename(path) not in owned:
            raise ConversionError(f"--output {prefix}: {path} exists and is not listed in {records.manifest_path(prefix)} "
                                  "(another tool's file?); not replaced, nothing was written")
    parts_dir = prefix + ".parts"
    with contextlib.ExitStack() as held:     # one converter writes a prefix at a time: the lock is in its parts folder
        try:
            held.enter_context(files.writing(parts_dir, "convert", setting="--output"))
        except files.NotOursError as e:
            raise ConversionError(str(e)) from None
        for stale in glob.glob(glob.escape(prefix) + "-*.tfrecord.tmp-*") + glob.glob(os.path.join(parts_dir, "*.tmp-*")):
            os.remove(stale)  # left by an interrupted run

        shard_infos, reused, t0, written_bytes, written_records = [], 0, time.time(), 0, 0
        bar = Progress(len(entries), os.path.basename(prefix), "img")
        pool_cm = (cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_exit_with_parent, initargs=(os.getpid(),))
                   if workers > 1 else _Inline())
        with pool_cm as pool:
            for index, path in enumerate(paths):
                chunk = entries[bounds[index]:bounds[index + 1]]
                spec = _spec_hash(chunk, sizes[bounds[index]:bounds[index + 1]])
                part_file = os.path.join(parts_dir, f"{index:05d}.json")
                part = _read_part(part_file)
                if (part and part["spec"] == spec and "record_people" in part and os.path.exists(path)
                        and sha256_file(path) == part["sha256"]):
                    shard_infos.append(part)
                    reused += 1
                    bar.update(len(chunk))
                    continue
                # the shard's name is claimed before the shard is written: a run killed between the shard's rename
                # and its full part file still owns the shard, and a re-run rewrites it (no sha256 to reuse it by)
                part_name = files.own(parts_dir, os.path.basename(part_file))
                write_json_atomic(part_name, {"file": os.path.basename(path), "spec": spec})
                part = _write_shard(chunk, path, spec, joint_set.num_joints, pool, bar)
                part["file"] = os.path.basename(path)
                write_json_atomic(part_name, part)
                written_bytes += part["bytes"]
                written_records += part["records"]
                shard_infos.append(part)
        bar.close()
        elapsed = time.time() - t0

        for part in shard_infos:
            skipped.extend(part["skipped"])
        manifest = {
            "written_by": "tfrecords_tools",
            "schema_version": records.SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "joint_set": joint_set.name,
            "joint_names": list(joint_set.names),
            "num_joints": joint_set.num_joints,
            "num_images": sum(p["records"] for p in shard_infos),
            "num_instances": sum(p["instances"] for p in shard_infos),
            "num_skipped": len(skipped),
            "skipped_by_reason": dict(Counter(item["reason"] for item in skipped)),
            "sources": [{"path": os.path.abspath(s), "sha256": sha256_file(s)} for s in sources],
            "shards": [{"file": os.path.basename(p), "records": s["records"], "instances": s["instances"],
                        "bytes": s["bytes"], "sha256": s["sha256"], "record_people": s["record_people"]}
                       for p, s in zip(paths, shard_infos)],
            "skipped": skipped,
            "stats": {"seconds": round(elapsed, 3), "shards_reused": reused,
                      "records_written": written_records, "bytes_written": written_bytes},
        }
        manifest.update(extra or {})
        write_json_atomic(records.manifest_path(prefix), manifest)
        _remove_unlisted_shards(prefix, paths, parts_dir, owned)
        if manifest["num_instances"] == 0:
            found = sum(1 for item in skipped if item.get("reason") != "missing file" and "image" in item)
            why = ("none of the images were found under the images folder" if entries and not found
                   else "no image with a person was written")
            raise ConversionError(f"{prefix}: wrote no people: {why} ({len(skipped)} items skipped, by reason "
                                  f"{manifest['skipped_by_reason']}; details in {records.manifest_path(prefix)})")
        return manifest


def check_prefix(prefix: str) -> None:
    """An output prefix names files, not a folder: ``data/coco/train2017`` ->
    ``data/coco/train2017-00000-of-00075.tfrecord`` + ``data/coco/train2017.json``."""
    if not prefix or prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        raise ConversionError(f"--output {prefix!r}: expected a prefix, not a folder: e.g. data/coco/train2017 "
                              "writes data/coco/train2017-00000-of-000NN.tfrecord and data/coco/train2017.json")


def owned_shards(prefix: str, sources: Sequence[str] = ()) -> set[str]:
    """The shard file names of ``prefix`` that tfrecords_tools wrote: those its manifest ``PREFIX.json``
    lists, and those an interrupted conversion recorded in ``PREFIX.parts``. A ``PREFIX.json`` that is
    one of the ``sources`` or is not our manifest is refused (one line): it is never replaced."""
    path = records.manifest_path(prefix)
    if any(os.path.exists(src) and os.path.lexists(path) and os.path.samefile(src, path) for src in sources):
        raise ConversionError(f"--output {prefix}: its manifest {path} would replace the input file of that name; "
                              "choose another --output prefix (e.g. data/coco/train2017 beside annotations/)")
    names: set[str] = set()
    if os.path.lexists(path):
        manifest = _read_part(path)
        if not (isinstance(manifest, dict) and "schema_version" in manifest and isinstance(manifest.get("shards"), list)):
            raise ConversionError(f"--output {prefix}: {path} exists and is not a manifest written by tfrecords_tools; "
                                  "not replaced, nothing was written (choose another --output prefix)")
        names |= {s["file"] for s in manifest["shards"] if isinstance(s, dict) and isinstance(s.get("file"), str)}
    parts_dir = prefix + ".parts"
    if files.owned_by(parts_dir) == "convert":
        for part in glob.glob(os.path.join(parts_dir, "[0-9][0-9][0-9][0-9][0-9].json")):
            info = _read_part(part)
            if isinstance(info, dict) and isinstance(info.get("file"), str) and files.is_listed(parts_dir, os.path.basename(part)):
                names.add(info["file"])
    return {n for n in names if os.path.basename(n) == n}


def _remove_unlisted_shards(prefix: str, paths: list[str], parts_dir: str, owned: set[str]) -> None:
    """Delete this prefix's shards (and part files) that the new manifest does not list, e.g. after a
    re-conversion into fewer shards: only shards an earlier manifest or part file of ours listed."""
    keep = {os.path.basename(p) for p in paths}
    folder = os.path.dirname(os.path.abspath(prefix))
    for name in owned - keep:
        if os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))          # ours: listed by our manifest or part file
    for part in glob.glob(os.path.join(parts_dir, "[0-9][0-9][0-9][0-9][0-9].json")):
        if int(os.path.basename(part)[:5]) >= len(paths) and files.is_listed(parts_dir, os.path.basename(part)):
            os.remove(part)


def _exit_with_parent(parent: int) -> None:
    """Pool worker start-up: end this worker as soon as the converter that started it is gone (a
    ``kill -9`` of the converter must not leave workers behind)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C reaches the whole group: the converter answers it

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class _Inline:
    """A stand-in executor that maps in this process (workers <= 1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)


def _read_part(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_shard(chunk, path, spec, num_joints, pool, bar) -> dict:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        return _write_shard_to(chunk, path, tmp, spec, num_joints, pool, bar)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)           # ours: the temporary shard of this process
        raise


def _write_shard_to(chunk, path, tmp, spec, num_joints, pool, bar) -> dict:
    import tensorflow as tf

    skipped, people = [], []
    with tf.io.TFRecordWriter(tmp) as writer:
        results = pool.map(check_image, [e.path for e in chunk], chunksize=4)
        for entry, (data, reason, size) in zip(chunk, results):
            bar.update(1)
            if data is None:
                skipped.append({"image": entry.filename, "image_id": entry.image_id, "reason": reason,
                                "instances": len(entry.persons)})
                continue
            if entry.height <= 0 or entry.width <= 0:
                entry = dataclasses.replace(entry, height=size[0], width=size[1])
            elif (entry.height, entry.width) != tuple(size):
                skipped.append({"image": entry.filename, "image_id": entry.image_id,
                                "reason": f"image is {size[1]}x{size[0]}, annotation says "
                                          f"{entry.width}x{entry.height}",
                                "instances": len(entry.persons)})
                continue
            writer.write(records.encode_example(entry, data, num_joints).SerializeToString(deterministic=True))
            people.append(len(entry.persons))
    digest = sha256_file(tmp)
    size = os.path.getsize(tmp)
    os.replace(tmp, path)
    return {"spec": spec, "sha256": digest, "records": len(people), "instances": sum(people),
            "record_people": people, "bytes": size, "skipped": skipped}


def report(manifest: dict, prefix: str) -> None:
    s = manifest["stats"]
    rate = s["records_written"] / s["seconds"] if s["seconds"] > 0 else 0.0
    print(f"{files.shown_path(prefix)}: {manifest['num_images']} images, {manifest['num_instances']} people\n"
          f"  {len(manifest['shards'])} shards ({s['shards_reused']} reused), "
          f"{manifest['num_skipped']} skipped, {rate:.1f} records/s, "
          f"{s['bytes_written'] / max(s['seconds'], 1e-9) / 1e6:.1f} MB/s")
    for item in manifest["skipped"][:10]:
        print(f"  skipped {item.get('image', item.get('annotation', '?'))}: {item['reason']}")
    if manifest["num_skipped"] > 10:
        print(f"  ... {manifest['num_skipped'] - 10} more in {records.manifest_path(prefix)}")
