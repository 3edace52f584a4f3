"""COCO-format person keypoints -> TFRecords (COCO train/val2017, its 1K/5K/10K subsets, custom sets).

Instance selection follows the reference (REFERENCE.md section 2): images in the order of the
``images`` array, each image's non-crowd annotations in file order, the box clipped to the
image and kept only if non-empty, annotations without any labelled keypoint dropped,
visibility ``min(v, 1)``. ``--max-instances N`` keeps the first N instances in that order,
which is how the paper's 1K/5K/10K labelled subsets are defined.

Example:
    python -m tfrecords_tools.coco --annotations person_keypoints_train2017.json \\
        --images train2017 --output data/coco/train2017
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from posedual_tf import joints
from posedual_tf.data import records
from tfrecords_tools import writer
from tfrecords_tools.writer import ConversionError, field


def clean_box(box, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The reference box clean-up: clip to the image, about 1 px narrower; None if empty."""
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1 and w * h > 0:
        return x1, y1, x2 - x1, y2 - y1
    return None


def keypoint_categories(data: dict, path: str) -> tuple[set[int], joints.JointSet]:
    """Category ids that declare keypoints, and their joint set."""
    cats = field(data, "categories", path, types=list)
    with_kp = [c for c in cats if isinstance(c, dict) and c.get("keypoints")]
    if not with_kp:
        raise ConversionError(f"{path}: categories: no category declares 'keypoints'")
    names = {tuple(c["keypoints"]) for c in with_kp}
    if len(names) > 1:
        raise ConversionError(f"{path}: categories: keypoint categories disagree on their 'keypoints' lists")
    try:
        jset = joints.coco_set_for_keypoint_names(next(iter(names)))
    except ValueError as e:
        raise ConversionError(f"{path}: categories.keypoints: {e}") from None
    return {int(field(c, "id", path, "categories")) for c in with_kp}, jset


def build_entries(ann_path: str, images_dir: str, max_instances: int = 0):
    """Entries, skipped annotations and the joint set of a COCO-format keypoint file."""
    data = writer.load_json(ann_path)
    cat_ids, jset = keypoint_categories(data, ann_path)
    images = field(data, "images", ann_path, types=list)
    anns = field(data, "annotations", ann_path, types=list)
    by_image: dict[int, list[dict]] = {}
    for i, a in enumerate(anns):
        by_image.setdefault(field(a, "image_id", ann_path, f"annotations[{i}]"), []).append(a)

    entries, skipped, total = [], [], 0
    for i, img in enumerate(images):
        where = f"images[{i}]"
        image_id = int(field(img, "id", ann_path, where))
        name = field(img, "file_name", ann_path, where, str)
        width = int(field(img, "width", ann_path, where, (int, float)))
        height = int(field(img, "height", ann_path, where, (int, float)))
        persons = []
        for a in by_image.get(image_id, []):
            if max_instances and total >= max_instances:
                break
            aid = int(a.get("id", -1))
            if a.get("iscrowd", 0):
                skipped.append({"annotation": aid, "image_id": image_id, "reason": "crowd"})
                continue
            if int(field(a, "category_id", ann_path, f"annotation {aid}")) not in cat_ids:
                skipped.append({"annotation": aid, "image_id": image_id, "reason": "not a keypoint category"})
                continue
            raw = field(a, "bbox", ann_path, f"annotation {aid}", list)
            kps = field(a, "keypoints", ann_path, f"annotation {aid}", list)
            if len(raw) != 4 or len(kps) != 3 * jset.num_joints:
                raise ConversionError(f"{ann_path}: annotation {aid}: field 'bbox' needs 4 numbers and "
                                      f"'keypoints' {3 * jset.num_joints}")
            box = clean_box([float(v) for v in raw], width, height)
            if box is None:
                skipped.append({"annotation": aid, "image_id": image_id, "reason": "empty box after clipping"})
                continue
            kp = np.asarray(kps, np.float32).reshape(-1, 3)
            if kp.max() == 0:
                skipped.append({"annotation": aid, "image_id": image_id, "reason": "no keypoints"})
                continue
            kp[:, 2] = np.minimum(kp[:, 2], 1.0)
            persons.append(records.Person(box=box, raw_box=[float(v) for v in raw], score=1.0,
                                          ann_id=aid, keypoints=kp))
            total += 1
        entries.append(records.ImageEntry(os.path.join(images_dir, name), name, image_id, height, width, persons))
        if max_instances and total >= max_instances:
            break
    return entries, skipped, jset


def convert(annotations: str, images: str, output: str, max_instances: int = 0, num_shards: int = 0,
            workers: int = 2) -> dict:
    """Convert one COCO-format keypoint file; returns the manifest."""
    entries, skipped, jset = build_entries(annotations, images, max_instances)
    return writer.write_dataset(entries, output, joint_set=jset, sources=[annotations], skipped=skipped,
                                num_shards=num_shards, workers=workers,
                                extra={"source": "coco", "max_instances": max_instances})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tfrecords_tools.coco", description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", required=True, help="COCO-format keypoint annotation json")
    ap.add_argument("--max-instances", type=int, default=0, help="keep the first N instances (0 = all)")
    writer.add_common_args(ap)
    args = ap.parse_args(argv)
    manifest = convert(args.annotations, args.images, args.output, args.max_instances, args.num_shards, args.workers)
    writer.report(manifest, args.output)


if __name__ == "__main__":
    writer.run_cli(main)
