"""AI Challenger 2017 keypoint annotations (raw format) -> TFRecords.

Boxes ``[x1, y1, x2, y2]`` become ``(x1, y1, x2 - x1, y2 - y1)`` with no clean-up; visibility
codes 1 (visible) and 2 (occluded) become 1, code 3 (not labelled) becomes 0
(reference lib/dataset/ai_challenger.py: ``AIDataset._get_db``). Image ids are the image's index in the file; the AIC id string is
kept as the file name. People whose box corners are not finite or are swapped or equal, or whose
keypoints are not 42 finite numbers with codes 1-3, are skipped and listed in the manifest.

Example:
    python -m tfrecords_tools.aic --annotations keypoint_train_annotations_20170909.json \\
        --images keypoint_train_images_20170902 --output data/aic/train
"""
from __future__ import annotations

import os

import numpy as np

from posedual_tf import joints
from posedual_tf.data import records
from posedual_tf.conversion import annotations as read
from posedual_tf.conversion.writer import ConversionError


def build_entries(ann_path: str, images_dir: str):
    data = read.load_json(ann_path)
    if not isinstance(data, list):
        raise ConversionError(f"{ann_path}: expected a list of image entries (raw AIC format)")
    entries, skipped = [], []
    for i, item in enumerate(data):
        where = f"entry {i}"
        image_id = read.field(item, "image_id", ann_path, where, str)
        kps = read.field(item, "keypoint_annotations", ann_path, where, dict)
        boxes = read.field(item, "human_annotations", ann_path, where, dict)
        persons = []
        for human, values in kps.items():
            if human not in boxes:
                raise ConversionError(f"{ann_path}: {where}: field 'human_annotations.{human}' missing")
            corners = read.numbers(boxes[human], 4)
            problem = read.keypoints_problem(values, joints.AIC.num_joints, visibility=(1, 2, 3))
            if corners is None:
                problem = "box is not 4 finite numbers"
            elif not (corners[2] > corners[0] and corners[3] > corners[1]):
                problem = "box corners swapped or box empty (x2 <= x1 or y2 <= y1)"
            if problem:
                skipped.append({"image": image_id, "annotation": human, "reason": problem})
                continue
            kp = np.asarray(values, np.float32).reshape(-1, 3)
            kp[:, 2] = (kp[:, 2] < 3).astype(np.float32)
            x1, y1, x2, y2 = (float(v) for v in corners)
            box = [x1, y1, x2 - x1, y2 - y1]
            persons.append(records.Person(box=box, raw_box=box, keypoints=kp))
        name = image_id + ".jpg"
        entries.append(records.ImageEntry(os.path.join(images_dir, name), name, i, 0, 0, persons))
    return entries, skipped
