"""MPII (simple-baseline json: center, scale, joints, joints_vis) -> TFRecords.

As the reference (REFERENCE.md section 2): if ``center_x != -1`` the centre moves down by
``15 * scale`` and the scale grows by 1.25; then centre and joints go from 1-based to 0-based.
The stored crop box is the square of side ``200 * scale / 1.25`` around that centre, so that
the pipeline's box -> (center, scale) rule (x1.25, aspect fix) gives back exactly the
reference centre and x-scale. People of one image are grouped into one record.

Example:
    python -m tfrecords_tools.mpii --annotations annot/train.json --images images --output data/mpii/train
"""
from __future__ import annotations

import os

import numpy as np

from posedual_tf import joints
from posedual_tf.data import records
from tfrecords_tools import writer
from tfrecords_tools.writer import ConversionError, field


def reference_center_scale(center, scale) -> tuple[np.ndarray, float]:
    """MPII centre (0-based) and scale after the reference's adjustments."""
    c = np.asarray(center, np.float64).copy()
    s = float(scale)
    if c[0] != -1:
        c[1] += 15 * s
        s *= 1.25
    return c - 1, s


def build_entries(ann_path: str, images_dir: str):
    data = writer.load_json(ann_path)
    if not isinstance(data, list):
        raise ConversionError(f"{ann_path}: expected a list of person entries")
    grouped: dict[str, list] = {}
    for i, item in enumerate(data):
        where = f"entry {i}"
        name = field(item, "image", ann_path, where, str)
        c, s = reference_center_scale(field(item, "center", ann_path, where, list),
                                      field(item, "scale", ann_path, where, (int, float)))
        jts = np.asarray(field(item, "joints", ann_path, where, list), np.float32)
        vis = np.asarray(field(item, "joints_vis", ann_path, where, list), np.float32)
        if jts.shape != (16, 2) or vis.shape != (16,):
            raise ConversionError(f"{ann_path}: {where}: 'joints' must be 16x2 and 'joints_vis' 16 values")
        kp = np.concatenate([jts - 1, np.minimum(vis, 1)[:, None]], axis=1)
        side = 200.0 * s / 1.25
        box = [float(c[0] - side / 2), float(c[1] - side / 2), side, side]
        grouped.setdefault(name, []).append(records.Person(box=box, raw_box=box, keypoints=kp, ann_id=i))
    entries = []
    for index, (name, persons) in enumerate(grouped.items()):
        stem = os.path.splitext(name)[0]
        image_id = int(stem) if stem.isdigit() else index
        entries.append(records.ImageEntry(os.path.join(images_dir, name), name, image_id, 0, 0, persons))
    return entries, []


def main(argv=None) -> None:
    writer.single_file_tool(argv, "python -m tfrecords_tools.mpii", __doc__, "MPII json in the simple-baseline format", build_entries,
                            joints.MPII, "mpii")


if __name__ == "__main__":
    writer.run_cli(main)
