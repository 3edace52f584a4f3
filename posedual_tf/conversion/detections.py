"""Images plus detected person boxes -> TFRecords (COCO WILD unlabelled set, detected-box eval).

Each detection of the person category with score >= ``--min-score`` becomes a person with
its raw box (no clean-up), its score and no keypoints (reference lib/dataset/coco.py: ``_load_coco_person_detection_results``). Images come
in the order of the image-info file; images without a kept detection are left out. Detections
whose score or box is not finite, whose box has no area or whose image id is unknown are skipped
and listed in the manifest.

Example:
    python -m tfrecords_tools.detections --image-info image_info_unlabeled2017.json \\
        --detections COCO_unlabeled2017_detections_person_faster_rcnn.json \\
        --images unlabeled2017 --output data/coco/unlabeled2017
"""
from __future__ import annotations

import os

from posedual_tf import joints
from posedual_tf.data import records
from posedual_tf.conversion import annotations as read, writer


def person_category_id(info: dict, path: str) -> int:
    for i, c in enumerate(info.get("categories", []) or []):
        if isinstance(c, dict) and c.get("name") == "person":
            return read.integer(c, "id", path, f"categories[{i}]")
    return 1


def build_entries(info_path: str, det_path: str, images_dir: str, min_score: float = 0.0):
    info = read.load_json(info_path)
    dets = read.load_json(det_path)
    if not isinstance(dets, list):
        raise writer.ConversionError(f"{det_path}: expected a list of detections")
    person = person_category_id(info, info_path)
    by_image: dict[int, list[dict]] = {}
    skipped = []
    known = {read.integer(img, "id", info_path, f"images[{i}]")
             for i, img in enumerate(read.field(info, "images", info_path, types=list))}
    for i, d in enumerate(dets):
        where = f"detections[{i}]"
        if read.integer(d, "category_id", det_path, where) != person:
            continue
        image_id = read.integer(d, "image_id", det_path, where)
        score = read.numbers([read.field(d, "score", det_path, where)], 1)
        problem = "score is not a finite number" if score is None else read.box_problem(read.field(d, "bbox", det_path, where))
        if not problem and image_id not in known:
            problem = "unknown image id"
        if problem:
            skipped.append({"detection": i, "image_id": image_id, "reason": problem})
            continue
        score = float(score[0])
        if score < min_score:
            skipped.append({"detection": i, "reason": f"score {score:.3f} < {min_score}"})
            continue
        box = [float(v) for v in d["bbox"]]
        by_image.setdefault(image_id, []).append(records.Person(box=box, raw_box=box, score=score))
    entries = []
    for i, img in enumerate(read.field(info, "images", info_path, types=list)):
        where = f"images[{i}]"
        image_id = read.integer(img, "id", info_path, where)
        name = read.field(img, "file_name", info_path, where, str)
        entries.append(records.ImageEntry(
            os.path.join(images_dir, name), name, image_id, int(img.get("height", 0)),
            int(img.get("width", 0)), by_image.get(image_id, [])))
    return entries, skipped


def convert(image_info: str, dets: str, images: str, output: str, min_score: float = 0.0, num_shards: int = 0,
            workers: int = 2) -> dict:
    """Convert images + person detections; returns the manifest."""
    entries, skipped = build_entries(image_info, dets, images, min_score)
    return writer.write_dataset(entries, output, joint_set=joints.COCO, sources=[image_info, dets], skipped=skipped,
                                num_shards=num_shards, workers=workers,
                                extra={"source": "detections", "min_score": min_score})
