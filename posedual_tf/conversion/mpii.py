"""MPII (simple-baseline json: center, scale, joints, joints_vis) -> TFRecords.

As the reference (reference lib/dataset/mpii.py: ``MPIIDataset._get_db``): if ``center_x != -1`` the centre moves down by
``15 * scale`` and the scale grows by 1.25; then centre and joints go from 1-based to 0-based.
The stored crop box is the square of side ``200 * scale / 1.25`` around that centre, so that
the pipeline's box -> (center, scale) rule (x1.25, aspect fix) gives back exactly the
reference centre and x-scale. People of one image are grouped into one record, each keeping its
index in the json (``person/id``), which evaluation uses to match ``gt_valid.mat``. Entries whose
centre, scale (> 0), joints or visibilities (0/1) are malformed are skipped and listed.

Example:
    python -m tfrecords_tools.mpii --annotations annot/train.json --images images --output data/mpii/train
"""
from __future__ import annotations

import os

import numpy as np

from posedual_tf.data import records
from posedual_tf.conversion import annotations as read
from posedual_tf.conversion.writer import ConversionError


def reference_center_scale(center, scale) -> tuple[np.ndarray, float]:
    """MPII centre (0-based) and scale after the reference's adjustments."""
    c = np.asarray(center, np.float64).copy()
    s = float(scale)
    if c[0] != -1:
        c[1] += 15 * s
        s *= 1.25
    return c - 1, s


def build_entries(ann_path: str, images_dir: str):
    data = read.load_json(ann_path)
    if not isinstance(data, list):
        raise ConversionError(f"{ann_path}: expected a list of person entries")
    grouped: dict[str, list] = {}
    skipped = []
    for i, item in enumerate(data):
        where = f"entry {i}"
        name = read.field(item, "image", ann_path, where, str)
        center = read.numbers(read.field(item, "center", ann_path, where), 2)
        scale = read.numbers([read.field(item, "scale", ann_path, where)], 1)
        rows = read.field(item, "joints", ann_path, where)
        flat = [v for r in rows for v in (r if isinstance(r, list) else [r])] if isinstance(rows, list) else None
        jts = read.numbers(flat, 32) if flat is not None and all(isinstance(r, list) and len(r) == 2 for r in rows) \
            else None
        vis = read.numbers(read.field(item, "joints_vis", ann_path, where), 16)
        problem = ("center is not 2 finite numbers" if center is None else
                   "scale is not a finite number > 0" if scale is None or scale[0] <= 0 else
                   "joints are not 16 x 2 finite numbers" if jts is None else
                   "joints_vis is not 16 values in {0, 1}" if vis is None or not np.isin(vis, (0, 1)).all() else "")
        if problem:
            skipped.append({"image": name, "annotation": i, "reason": problem})
            continue
        c, s = reference_center_scale(center, scale[0])
        kp = np.concatenate([jts.reshape(16, 2) - 1, vis[:, None]], axis=1).astype(np.float32)
        side = 200.0 * s / 1.25
        box = [float(c[0] - side / 2), float(c[1] - side / 2), side, side]
        grouped.setdefault(name, []).append(records.Person(box=box, raw_box=box, keypoints=kp, ann_id=i))
    entries, taken = [], {}
    for index, (name, persons) in enumerate(grouped.items()):
        stem = os.path.splitext(name)[0]
        image_id = int(stem) if stem.isdigit() else index
        if image_id in taken:         # 1.jpg and 01.jpg: one id would mix their people in evaluation
            skipped.append({"image": name, "image_id": image_id, "instances": len(persons),
                            "reason": f"image id {image_id} (from the file name) is already {taken[image_id]}'s"})
            continue
        taken[image_id] = name
        entries.append(records.ImageEntry(os.path.join(images_dir, name), name, image_id, 0, 0, persons))
    return entries, skipped
