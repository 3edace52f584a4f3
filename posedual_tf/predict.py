"""Run an exported SavedModel on your own images and draw the result.

    python -m posedual_tf.predict --saved-model DIR (--image FILE | --images DIR) \\
        [--boxes DETECTIONS.json | --whole-image] [--min-box-score 0.5] --output OUT_DIR

People come from ``--boxes`` (a detections json: the precise path), ``--whole-image`` (one person
filling the picture), or, with neither, OpenCV's HOG pedestrian detector: a weak default that needs no
download and finds upright, unoccluded people of 100 px or more, and misses many others.

Writes into ``OUT_DIR`` (never the input folder, never over a file it did not write):

* one drawing per image, ``<file name>.pose.png`` (``a.jpg`` -> ``a.jpg.pose.png``, so ``a.jpg`` and
  ``a.png`` stay apart);
* ``results.json`` in the COCO results format, which
  :func:`posedual_tf.evaluation.coco.evaluate_coco` accepts;
* ``images.json``: every input file with its image id, its drawing, its people, and why an image or
  a box was skipped.

Image ids are the numbers in the file names (``000000785.jpg`` -> 785, as COCO names its files) when
every file has one and no two share it; otherwise every image gets its position in name order (1, 2,
...), so ids never depend on the run. ``--boxes`` takes COCO detections (a list of ``image_id``,
``bbox``, ``score``) or a json keyed by file name (``{"a.jpg": [[x, y, w, h], ...]}`` or lists of
``{"bbox": ..., "score": ...}``). Boxes are cut to their image; one outside it or without area gets no
keypoints (counted in one warning line and listed in images.json).
"""
from __future__ import annotations

import json
import math
import os
import re
import sys

from absl import flags

from posedual_tf import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("saved-model", None, "SavedModel folder written by posedual_tf.export")
    flags.DEFINE_string("image", None, "one image file")
    flags.DEFINE_string("images", None, "a folder of images (jpg, jpeg, png)")
    flags.DEFINE_string("boxes", None, "person boxes: COCO detections json (image_id, bbox, score) or "
                                       "{file name: [[x, y, w, h], ...]}. Without --boxes or --whole-image, "
                                       "OpenCV's HOG people detector finds them: a WEAK default (upright, "
                                       "unoccluded, >= ~100 px tall people only)")
    flags.DEFINE_bool("whole-image", False, "use the whole image as one person box")
    flags.DEFINE_float("min-hog-score", 0.0, "with neither --boxes nor --whole-image: keep HOG detections whose SVM "
                                             "margin exceeds this")
    flags.DEFINE_float("min-box-score", 0.0, "ignore detections below this score")
    flags.DEFINE_string("output", None, "output folder (not the input folder)")
    flags.adopt_module_key_flags(cli)


IMAGE_EXT = (".jpg", ".jpeg", ".png")
RECORD = "images.json"


class PredictError(ValueError):
    """Bad arguments or input files (one line)."""


def image_ids(paths: list[str]) -> dict[str, int]:
    """Stable ids: the last number in every file name when that is unambiguous, else name order (1-based)."""
    names = [os.path.basename(p) for p in paths]
    digits = [re.findall(r"\d+", os.path.splitext(n)[0]) for n in names]
    if all(digits):
        ids = [int(d[-1]) for d in digits]
        if len(set(ids)) == len(ids):
            return dict(zip(names, ids))
    return {n: i + 1 for i, n in enumerate(sorted(names))}


def _box(value, source: str, where: str) -> list[float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise PredictError(f"{source}: {where}: expected a box of 4 finite numbers [x, y, w, h], got {value!r}")
    return [float(v) for v in value]


def load_boxes(path: str, min_score: float, ids: dict[str, int]) -> dict[str, list[tuple[list[float], float]]]:
    """Boxes per file name from COCO detections (by image id) or a json keyed by file name."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PredictError(f"{path}: not a readable json file ({e})") from None
    by_id = {i: n for n, i in ids.items()}
    out: dict[str, list] = {}
    if isinstance(data, dict):
        for name, items in data.items():
            if not isinstance(items, list):
                raise PredictError(f"{path}: {name!r}: expected a list of boxes")
            for k, item in enumerate(items):
                bbox, score = (item.get("bbox"), item.get("score", 1.0)) if isinstance(item, dict) else (item, 1.0)
                box = _box(bbox, path, f"{name!r}[{k}]")
                if score >= min_score:
                    out.setdefault(name, []).append((box, float(score)))
        return out
    if not isinstance(data, list):
        raise PredictError(f"{path}: expected COCO detections (a list) or a mapping from file name to boxes")
    for i, d in enumerate(data):
        if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
            raise PredictError(f"{path}: detections[{i}]: expected fields 'image_id' and 'bbox'")
        box = _box(d["bbox"], path, f"detections[{i}]")
        score = d.get("score", 1.0)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise PredictError(f"{path}: detections[{i}]: score {score!r} is not a finite number")
        if d.get("category_id", 1) != 1 or score < min_score or int(d["image_id"]) not in by_id:
            continue
        out.setdefault(by_id[int(d["image_id"])], []).append((box, float(score)))
    return out


def plan_outputs(paths: list[str], output: str) -> dict[str, str]:
    """The drawing of every input; refuses an output folder that is the input folder, or that holds files
    of those names that an earlier predict run did not write."""
    out_real = os.path.realpath(output)
    inputs = {os.path.realpath(p) for p in paths}
    if any(os.path.dirname(p) == out_real for p in inputs):
        raise PredictError(f"--output {output}: is the folder of the input images; choose another folder")
    ours: set[str] = set()
    record = os.path.join(output, RECORD)
    if os.path.lexists(record):          # an earlier run's record: what it lists is ours to replace
        try:
            with open(record) as f:
                ours = {e["drawing"] for e in json.load(f)["images"] if e.get("drawing")} | {"results.json", RECORD}
        except (OSError, ValueError, KeyError, TypeError):
            raise PredictError(f"--output {output}: holds an {RECORD} that predict did not write; "
                               "choose another folder") from None
    plan = {p: os.path.basename(p) + ".pose.png" for p in paths}
    for name in list(plan.values()) + ["results.json", RECORD]:
        if os.path.lexists(os.path.join(output, name)) and name not in ours:
            raise PredictError(f"--output {output}: already holds {name}, which predict did not write; "
                               "choose another folder")
    return plan


def hog_people(img, min_score: float = 0.0, max_side: int = 800) -> list[tuple[list[float], float]]:
    """People boxes ``(x, y, w, h)`` and scores from OpenCV's HOG + linear SVM pedestrian detector
    (Dalal and Triggs), run on the image scaled to ``max_side``; score = sigmoid(SVM margin)."""
    import cv2
    import numpy as np

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    s = min(1.0, max_side / max(img.shape[:2]))
    small = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s))) if s < 1 else img
    rects, weights = hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
    return [([float(v) / s for v in r], 1.0 / (1.0 + math.exp(-float(w))))
            for r, w in zip(rects, np.asarray(weights).ravel()) if float(w) > min_score]


def run(saved_model: str, paths: list[str], output: str, boxes: dict | None, progress: bool = True,
        whole_image: bool = False, min_hog_score: float = 0.0) -> list[dict]:
    """Predict every image; returns the COCO results entries it wrote. People come from ``boxes``
    (per file name), else the whole image, else :func:`hog_people`."""
    import cv2
    import numpy as np
    import tensorflow as tf
    from posedual_tf import files, joints
    from posedual_tf.progress import Progress
    from tfrecords_tools.inspect import draw_person

    ids = image_ids(paths)
    plan = plan_outputs(paths, output)
    try:
        model = tf.saved_model.load(saved_model)
    except (OSError, ValueError) as e:
        raise PredictError(f"--saved-model {saved_model}: not a SavedModel ({str(e).splitlines()[0]})") from None
    fn = model.signatures["predict_image"]
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise PredictError(f"--output {output}: cannot create it ({e.strerror})") from None
    results, record, empty_boxes = [], [], 0
    bar = Progress(len(paths), "predict", "img", enabled=progress)
    for path in paths:
        bar.update()
        name = os.path.basename(path)
        entry = {"file": path, "image_id": ids[name], "drawing": None, "people": 0}
        record.append(entry)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            entry["skipped"] = f"unreadable ({e.strerror})"
            continue
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            entry["skipped"] = "empty file" if not data else "not a decodable image"
            continue
        if boxes is not None:
            people = boxes.get(name, [])
        elif whole_image:
            people = [([0.0, 0.0, float(img.shape[1]), float(img.shape[0])], 1.0)]
        else:
            people = hog_people(img, min_hog_score)
            entry["detector"] = "hog"
        box_arr = np.array([b for b, _ in people], np.float32).reshape(-1, 4)
        try:
            out = fn(image_bytes=tf.constant(data), boxes=tf.constant(box_arr))
        except tf.errors.InvalidArgumentError as e:
            entry["skipped"] = f"the model could not read it ({e.message.splitlines()[0]})"
            continue
        kps, scores, valid = out["keypoints"].numpy(), out["scores"].numpy(), out["valid"].numpy()
        for k, ((box, box_score), kp, s, ok) in enumerate(zip(people, kps, scores, valid)):
            if not ok:
                entry.setdefault("boxes_without_area", []).append(k)
                empty_boxes += 1
                continue
            draw_person(img, box, np.concatenate([kp[:, :2], (kp[:, 2:] > 0.2).astype(np.float32)], 1), joints.COCO)
            results.append({"image_id": ids[name], "category_id": 1,
                            "keypoints": [round(float(v), 3) for v in kp.ravel()],
                            "score": float(s * box_score), "bbox": [float(v) for v in box]})
            entry["people"] += 1
        ok, png = cv2.imencode(".png", img)
        files.write_atomic(os.path.join(output, plan[path]), png.tobytes())
        entry["drawing"] = plan[path]
    bar.close()
    files.write_json_atomic(os.path.join(output, "results.json"), results)
    files.write_json_atomic(os.path.join(output, RECORD), {"images": record})
    skipped = [e for e in record if "skipped" in e]
    for e in skipped:
        print(f"skipped {e['file']}: {e['skipped']}", file=sys.stderr)
    if empty_boxes:
        print(f"warning: {empty_boxes} boxes lie outside their image or have no area: no keypoints for them "
              f"(listed in {os.path.join(output, RECORD)})", file=sys.stderr)
    return results


def main(argv):
    del argv
    saved_model, output = FLAGS["saved-model"].value, FLAGS.output
    if not saved_model or not output or not (FLAGS.image or FLAGS.images):
        sys.exit("error: --saved-model, --output and one of --image / --images are required")
    if FLAGS.boxes and FLAGS["whole-image"].value:
        sys.exit("error: give one of --boxes FILE or --whole-image, not both")
    if not FLAGS.boxes and not FLAGS["whole-image"].value:
        print("no --boxes: finding people with OpenCV's HOG detector, a weak default (upright, unoccluded, "
              "large people); a detections json (--boxes) is the precise path", file=sys.stderr)
    if FLAGS.image:
        if not os.path.isfile(FLAGS.image):
            raise PredictError(f"--image {FLAGS.image}: no such file")
        paths = [FLAGS.image]
    else:
        if not os.path.isdir(FLAGS.images):
            raise PredictError(f"--images {FLAGS.images}: no such folder")
        paths = sorted(os.path.join(FLAGS.images, n) for n in os.listdir(FLAGS.images)
                       if n.lower().endswith(IMAGE_EXT))
    ids = image_ids(paths)
    boxes = load_boxes(FLAGS.boxes, FLAGS["min-box-score"].value, ids) if FLAGS.boxes else None
    results = run(saved_model, paths, output, boxes, whole_image=FLAGS["whole-image"].value,
                  min_hog_score=FLAGS["min-hog-score"].value)            # errors: one line (cli.guarded)
    print(f"{len(paths)} images, {len(results)} people -> {os.path.abspath(output)} (results.json, {RECORD})")


if __name__ == "__main__":
    cli.run(main, define_flags)
