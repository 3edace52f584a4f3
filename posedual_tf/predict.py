"""Run an exported SavedModel on your own images and draw the result.

    python -m posedual_tf.predict --saved-model DIR (--image FILE | --images DIR) \\
        [--boxes COCO_DET.json | --whole-image] [--min-box-score 0.5] --output OUT_DIR

Writes one PNG per image (boxes and COCO skeletons) and ``OUT_DIR/results.json`` in the COCO
results format (image ids from the file names' digits, as COCO files are named), which
:func:`posedual_tf.evaluation.coco.evaluate_coco` accepts.
"""
from __future__ import annotations

import json
import os
import re
import sys

from absl import app, flags

flags.DEFINE_string("saved-model", None, "SavedModel folder written by posedual_tf.export")
flags.DEFINE_string("image", None, "one image file")
flags.DEFINE_string("images", None, "a folder of images (jpg, jpeg, png)")
flags.DEFINE_string("boxes", None, "COCO-format person detections json (image_id, bbox, score)")
flags.DEFINE_bool("whole-image", False, "use the whole image as one person box")
flags.DEFINE_float("min-box-score", 0.0, "ignore detections below this score")
flags.DEFINE_string("output", None, "output folder")
FLAGS = flags.FLAGS
IMAGE_EXT = (".jpg", ".jpeg", ".png")


def image_id_of(path: str) -> int:
    digits = re.findall(r"\d+", os.path.splitext(os.path.basename(path))[0])
    return int(digits[-1]) if digits else abs(hash(os.path.basename(path))) % (10 ** 9)


def load_boxes(path: str, min_score: float) -> dict[int, list[tuple[list[float], float]]]:
    with open(path) as f:
        dets = json.load(f)
    if not isinstance(dets, list):
        raise ValueError(f"{path}: expected a list of detections")
    out: dict[int, list] = {}
    for i, d in enumerate(dets):
        for key in ("image_id", "bbox"):
            if key not in d:
                raise ValueError(f"{path}: detections[{i}]: missing field '{key}'")
        if d.get("category_id", 1) != 1 or d.get("score", 1.0) < min_score:
            continue
        out.setdefault(int(d["image_id"]), []).append(([float(v) for v in d["bbox"]], float(d.get("score", 1.0))))
    return out


def run(saved_model: str, paths: list[str], output: str, boxes: dict | None, progress: bool = True) -> list[dict]:
    """Predict every image; returns the COCO results entries it wrote."""
    import cv2
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from posedual_tf import joints
    from tfrecords_tools.inspect import draw_person

    model = tf.saved_model.load(saved_model)
    fn = model.signatures["predict_image"] if hasattr(model, "signatures") else model.predict_image
    os.makedirs(output, exist_ok=True)
    results, failed = [], []
    for path in tqdm(paths, desc="predict", unit="img", disable=not progress or None, file=sys.stderr):
        with open(path, "rb") as f:
            data = f.read()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            failed.append(path)
            continue
        image_id = image_id_of(path)
        if boxes is None:
            people = [([0.0, 0.0, float(img.shape[1] - 1), float(img.shape[0] - 1)], 1.0)]
        else:
            people = boxes.get(image_id, [])
        box_arr = np.array([b for b, _ in people], np.float32).reshape(-1, 4)
        out = fn(image_bytes=tf.constant(data), boxes=tf.constant(box_arr))
        kps, scores = out["keypoints"].numpy(), out["scores"].numpy()
        for (box, box_score), kp, s in zip(people, kps, scores):
            draw_person(img, box, np.concatenate([kp[:, :2], (kp[:, 2:] > 0.2).astype(np.float32)], 1), joints.COCO)
            results.append({"image_id": image_id, "category_id": 1, "keypoints": [round(float(v), 3) for v in kp.ravel()],
                            "score": float(s * box_score), "bbox": [float(v) for v in box]})
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        cv2.imwrite(os.path.join(output, name), img)
    tmp = os.path.join(output, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f)
    os.replace(tmp, os.path.join(output, "results.json"))
    for p in failed:
        print(f"skipped {p}: not a readable image")
    return results


def main(argv):
    del argv
    saved_model, output = FLAGS["saved-model"].value, FLAGS.output
    if not saved_model or not output or not (FLAGS.image or FLAGS.images):
        sys.exit("error: --saved-model, --output and one of --image / --images are required")
    if bool(FLAGS.boxes) == bool(FLAGS["whole-image"].value):
        sys.exit("error: give exactly one of --boxes FILE or --whole-image")
    if FLAGS.image:
        paths = [FLAGS.image]
    else:
        paths = sorted(os.path.join(FLAGS.images, n) for n in os.listdir(FLAGS.images) if n.lower().endswith(IMAGE_EXT))
    try:
        boxes = load_boxes(FLAGS.boxes, FLAGS["min-box-score"].value) if FLAGS.boxes else None
        results = run(saved_model, paths, output, boxes)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"{len(paths)} images, {len(results)} people -> {os.path.abspath(output)} (results.json)")


if __name__ == "__main__":
    app.run(main)
