"""Run an exported SavedModel on your own images and draw the result.

    python -m posedual_tf.predict --saved-model DIR (--image FILE | --images DIR | --sample) \\
        [--boxes DETECTIONS.json | --detector OD_SAVED_MODEL | --whole-image] [--min-box-score 0.5] \\
        --output OUT_DIR

``--sample``: the photo shipped with the package and its person's box (:mod:`posedual_tf.samples`).

In Python, this module is also the function :func:`posedual_tf.inference.predict`:
``posedual_tf.predict(model, images, boxes=None, detector=None)`` (calling the module calls it).

People come from ``--boxes`` (a detections json: the precise path), ``--detector`` (a person detector
you bring: any SavedModel with the TF2 Object Detection API's signature, e.g. SSD MobileNet or
EfficientDet from the TF2 Detection Model Zoo; :mod:`posedual_tf.detector`), ``--whole-image`` (one
person filling the picture), or, with none, OpenCV's HOG pedestrian detector: a weak default that needs
no download and finds upright, unoccluded people of 100 px or more, and misses many others.

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

import math
import os
import re
import sys

import types

from absl import flags

from posedual_tf import cli, files
from posedual_tf.inference import PredictError

FLAGS = flags.FLAGS


class _CallableModule(types.ModuleType):
    """``posedual_tf.predict`` is this command's module and, called, the Python API's predict: importing the
    command (``python -m``, or any ``import posedual_tf.predict``) must not hide the function."""

    def __call__(self, model, images, boxes=None, detector=None, **kwargs):
        from posedual_tf import api

        return api.predict(model, images, boxes, detector, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("saved-model", None, "SavedModel folder written by posedual_tf.export")
    flags.DEFINE_string("image", None, "one image file")
    flags.DEFINE_string("images", None, "a folder of images (jpg, jpeg, png)")
    flags.DEFINE_bool("sample", False, "the photo shipped with the package and its person's box "
                                       "(posedual_tf/samples/ATTRIBUTION.md)")
    flags.DEFINE_string("boxes", None, "person boxes: COCO detections json (image_id, bbox, score) or "
                                       "{file name: [[x, y, w, h], ...]}. Without --boxes or --whole-image, "
                                       "OpenCV's HOG people detector finds them: a WEAK default (upright, "
                                       "unoccluded, >= ~100 px tall people only)")
    flags.DEFINE_string("detector", None, "a person detector you bring: a SavedModel with the TF2 Object Detection "
                                          "API's signature (uint8 image in; detection_boxes, detection_classes, "
                                          "detection_scores out), e.g. SSD MobileNet / EfficientDet from the TF2 "
                                          "Detection Model Zoo")
    flags.DEFINE_integer("detector-class", 1, "--detector: the person class id (1 in the OD API's COCO label map)",
                         lower_bound=1)
    flags.DEFINE_float("detector-threshold", 0.5, "--detector: keep people scoring at least this",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_bool("whole-image", False, "use the whole image as one person box")
    flags.DEFINE_float("min-hog-score", 0.0, "with neither --boxes nor --whole-image: keep HOG detections whose SVM "
                                             "margin exceeds this")
    flags.DEFINE_float("min-box-score", 0.0, "--boxes: ignore detections below this score",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("output", None, "output folder (not the input folder)")
    flags.adopt_module_key_flags(cli)
    cli.any_finite("min-hog-score", "an SVM margin, of either sign")
    with_detector = lambda: bool(FLAGS.detector)  # noqa: E731
    cli.only_when("detector-class", with_detector, "only with --detector (the detector's person class)")
    cli.only_when("detector-threshold", with_detector, "only with --detector (its people's lowest score)")
    cli.only_when("min-box-score", lambda: bool(FLAGS.boxes), "only with --boxes (a detections file's lowest score)")
    cli.only_when("min-hog-score", lambda: not (FLAGS.boxes or FLAGS.detector or FLAGS["whole-image"].value),
                  "only when OpenCV's HOG detector finds the people (no --boxes, --detector or --whole-image)",
                  example=("--whole-image",))


IMAGE_EXT = (".jpg", ".jpeg", ".png")
RECORD = "images.json"


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
    """Boxes per file name from COCO detections (by image id) or a json keyed by file name (a key that
    is a path matches by its base name). Boxes that match no image are counted in one warning line;
    when none matches, or every detection is of another category, it is an error naming the file."""
    if not math.isfinite(min_score):
        raise PredictError(f"--min-box-score {min_score}: expected a finite number")
    from posedual_tf import files

    try:
        data = files.read_json(path, "boxes: COCO detections or {file name: [[x, y, w, h], ...]}")
    except (OSError, ValueError) as e:
        raise PredictError(cli.one_line(e)) from None
    by_id = {i: n for n, i in ids.items()}
    out: dict[str, list] = {}
    unmatched: list[str] = []
    total = 0
    if isinstance(data, dict):
        for key, items in data.items():
            if not isinstance(items, list):
                raise PredictError(f"{path}: {key!r}: expected a list of boxes")
            name = key if key in ids else os.path.basename(key)
            for k, item in enumerate(items):
                bbox, score = (item.get("bbox"), item.get("score", 1.0)) if isinstance(item, dict) else (item, 1.0)
                box = _box(bbox, path, f"{key!r}[{k}]")
                if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
                    raise PredictError(f"{path}: {key!r}[{k}]: score {score!r} is not a finite number")
                total += 1
                if name not in ids:
                    unmatched.append(key)
                elif score >= min_score:
                    out.setdefault(name, []).append((box, float(score)))
        _check_matched(path, total, unmatched, "file names", sorted(ids)[:3])
        return out
    if not isinstance(data, list):
        raise PredictError(f"{path}: expected COCO detections (a list) or a mapping from file name to boxes")
    other_category = 0
    for i, d in enumerate(data):
        if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
            raise PredictError(f"{path}: detections[{i}]: expected fields 'image_id' and 'bbox'")
        box = _box(d["bbox"], path, f"detections[{i}]")
        score, image_id, category = d.get("score", 1.0), d["image_id"], d.get("category_id", 1)
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise PredictError(f"{path}: detections[{i}]: score {score!r} is not a finite number")
        for field, value in (("image_id", image_id), ("category_id", category)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise PredictError(f"{path}: detections[{i}]: {field} {value!r} is not an integer (COCO's person "
                                   "category is 1)")
        if category != 1:
            other_category += 1
            continue
        total += 1
        if image_id not in by_id:
            unmatched.append(str(image_id))
        elif score >= min_score:
            out.setdefault(by_id[image_id], []).append((box, float(score)))
    if data and other_category == len(data):
        raise PredictError(f"{path}: all {len(data)} detections are of category_id != 1; COCO's person category is 1")
    _check_matched(path, total, unmatched, "image ids", sorted(by_id)[:3])
    return out


def _check_matched(path: str, total: int, unmatched: list[str], what: str, examples: list) -> None:
    """No box of ``path`` matching an image is an error; some is a warning line."""
    if total and len(unmatched) == total:
        raise PredictError(f"{path}: none of its {total} boxes matches an image ({what} such as {unmatched[0]!r}; "
                           f"the images' are e.g. {', '.join(map(str, examples))})")
    if unmatched:
        print(f"warning: {path}: {len(unmatched)} of {total} boxes match no image (e.g. {unmatched[0]!r}); "
              "they are ignored", file=sys.stderr)


def images_in(folder: str) -> list[str]:
    """The image files (by extension) directly in ``folder``, in name order; none is an error that
    says where images are when they sit in subfolders (predict reads one folder)."""
    if not os.path.isdir(folder):
        raise PredictError(f"--images {folder}: no such folder")
    names = sorted(os.listdir(folder))
    paths = [os.path.join(folder, n) for n in names if n.lower().endswith(IMAGE_EXT)]
    if paths:
        return paths
    subs = [n for n in names if os.path.isdir(os.path.join(folder, n))
            and any(m.lower().endswith(IMAGE_EXT) for m in os.listdir(os.path.join(folder, n)))]
    hint = (f"; its subfolders {', '.join(subs[:3])} hold some: predict reads one folder, e.g. --images "
            f"{os.path.join(folder, subs[0])}" if subs else "")
    raise PredictError(f"--images {folder}: no {'/'.join(e[1:] for e in IMAGE_EXT)} files in it{hint}")


def plan_outputs(paths: list[str], output: str) -> dict[str, str]:
    """The drawing of every input; refuses (one line, before any work) an output folder that is the
    input folder, one that holds files posedual_tf did not write, and one of another tool's (the
    ownership rule of :mod:`posedual_tf.files`: an earlier predict run's files are listed, so they
    may be replaced, also after a crash)."""
    from posedual_tf import files

    out_real = os.path.realpath(output)
    inputs = {os.path.realpath(p) for p in paths}
    if any(os.path.dirname(p) == out_real for p in inputs):
        raise PredictError(f"--output {output}: is the folder of the input images; choose another folder")
    files.claim(output, "predict", setting="--output", create=False)
    plan = {p: os.path.basename(p) + ".pose.png" for p in paths}
    for name in list(plan.values()) + ["results.json", RECORD]:
        if os.path.lexists(os.path.join(output, name)) and not files.is_listed(output, name):
            raise PredictError(f"--output {output}: already holds {name}, which predict did not write; "
                               "choose another folder")
    return plan


def run(saved_model: str, paths: list[str], output: str, boxes: dict | None, progress: bool = True,
        whole_image: bool = False, min_hog_score: float = 0.0, detector=None) -> list[dict]:
    """Predict every image; returns the COCO results entries it wrote. People come from ``boxes``
    (per file name), else ``detector`` (``bgr image -> [(box, score)]``, e.g. a
    :class:`~posedual_tf.detector.ODDetector`), else the whole image, else
    :func:`~posedual_tf.detector.hog_people`."""
    import cv2
    import numpy as np
    import tensorflow as tf
    from posedual_tf import inference, joints
    from posedual_tf.detector import hog_people, hog_too_small
    from posedual_tf.progress import Progress
    from posedual_tf.drawing import draw_person

    ids = image_ids(paths)
    plan = plan_outputs(paths, output)
    try:
        model = inference.model_runner(saved_model)
    except (OSError, ValueError) as e:
        raise PredictError(f"--saved-model {saved_model}: not a SavedModel ({str(e).splitlines()[0]})") from None
    with files.writing(output, "predict", setting="--output"):      # one predict writes a folder at a time
        files.own_all(output, list(plan.values()) + ["results.json", RECORD])     # one write of the list
        results, record, empty_boxes = [], [], 0
        bar = Progress(len(paths), "predict", "img", enabled=progress)
        for path in paths:
            bar.update()
            name = os.path.basename(path)
            entry = {"file": path, "image_id": ids[name], "drawing": None, "people": 0}
            record.append(entry)
            try:
                image = inference.load_image(path)
            except ValueError as e:
                entry["skipped"] = str(e).removeprefix("image: ").removeprefix(f"{path}: ")
                continue
            img = np.ascontiguousarray(image.rgb[..., ::-1])          # BGR, as OpenCV draws
            if image.orientation != 1:
                entry["exif_orientation"] = image.orientation
            if boxes is not None:
                people = boxes.get(name, [])
            elif detector is not None:
                try:
                    people = detector(img)
                except ValueError as e:         # its outputs are not boxes (DetectorError): named, this image skipped
                    entry["skipped"] = str(e)
                    continue
                entry["detector"] = "--detector"
            elif whole_image:
                people = [([0.0, 0.0, float(img.shape[1]), float(img.shape[0])], 1.0)]
            elif hog_too_small(img.shape):
                entry["skipped"] = f"{hog_too_small(img.shape)}; give --boxes or --whole-image"
                continue
            else:
                people = hog_people(img, min_hog_score)
                entry["detector"] = "hog"
            box_arr = np.array([b for b, _ in people], np.float32).reshape(-1, 4)
            try:
                kps, scores, valid = model(image, box_arr)
            except tf.errors.InvalidArgumentError as e:
                entry["skipped"] = f"--saved-model {saved_model} could not read it ({cli.first_cause(e.message)})"
                continue
            for k, ((box, box_score), kp, s, ok) in enumerate(zip(people, kps, scores, valid)):
                if not ok:
                    entry.setdefault("boxes_without_area", []).append(k)
                    empty_boxes += 1
                    continue
                draw_person(img, box, np.concatenate([kp[:, :2], (kp[:, 2:] > 0.2).astype(np.float32)], 1), joints.COCO)
                person = inference.Person(kp, tuple(box), float(s * box_score), box_score)
                results.append(person.to_coco(ids[name]))
                entry["people"] += 1
            ok, png = cv2.imencode(".png", img)
            files.write_atomic(os.path.join(output, plan[path]), png.tobytes())     # listed by own_all above
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
    cli.required("saved-model", "output")
    inputs = [f for f, on in (("--image", FLAGS.image), ("--images", FLAGS.images), ("--sample", FLAGS.sample)) if on]
    if not inputs:
        raise cli.UsageError("one of --image FILE, --images DIR or --sample is required; --help lists every flag")
    if len(inputs) > 1:
        raise PredictError(f"give one of --image FILE, --images DIR or --sample, not {' and '.join(inputs)}")
    if FLAGS.sample:
        from posedual_tf import samples

        FLAGS.image = samples.IMAGE
        if not (FLAGS.detector or FLAGS["whole-image"].value):
            FLAGS.boxes = FLAGS.boxes or samples.BOXES_FILE
    sources = [f for f, on in (("--boxes", FLAGS.boxes), ("--detector", FLAGS.detector),
                                ("--whole-image", FLAGS["whole-image"].value)) if on]
    if len(sources) > 1:
        sys.exit(f"error: give one of --boxes FILE, --detector DIR or --whole-image, not {' and '.join(sources)}")
    if not sources:
        print("no --boxes: finding people with OpenCV's HOG detector, a weak default\n"
              "  (upright, unoccluded, large people); a detections json (--boxes) or a\n"
              "  detector of yours (--detector) is the precise path", file=sys.stderr)
    if FLAGS.image:
        if not os.path.isfile(FLAGS.image):
            raise PredictError(f"--image {FLAGS.image}: no such file")
        paths = [FLAGS.image]
    else:
        paths = images_in(FLAGS.images)
    ids = image_ids(paths)
    boxes = load_boxes(FLAGS.boxes, FLAGS["min-box-score"].value, ids) if FLAGS.boxes else None
    detector = None
    if FLAGS.detector:
        from posedual_tf.detector import ODDetector

        detector = ODDetector(FLAGS.detector, FLAGS["detector-class"].value, FLAGS["detector-threshold"].value)
    results = run(saved_model, paths, output, boxes, whole_image=FLAGS["whole-image"].value,
                  min_hog_score=FLAGS["min-hog-score"].value, detector=detector)   # errors: one line (cli.guarded)
    print(f"{len(paths)} images, {len(results)} people -> {files.shown_path(output)}\n"
          f"  (drawings, results.json, {RECORD})")


if __name__ == "__main__":
    cli.run(main, define_flags)
