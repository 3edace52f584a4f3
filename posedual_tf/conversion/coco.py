"""COCO-format person keypoints -> TFRecords (COCO train/val2017, its 1K/5K/10K subsets, custom sets).

Instance selection follows the reference (reference lib/dataset/coco.py: ``_load_coco_keypoint_annotation_kernal``): images in the order of the
``images`` array, each image's non-crowd annotations in file order, the box clipped to the
image and kept only if non-empty, annotations without any labelled keypoint dropped,
visibility ``min(v, 1)``. ``--max-instances N`` keeps the first N instances in that order,
which is how the paper's 1K/5K/10K labelled subsets are defined.

Example:
    python -m tfrecords_tools.coco --annotations person_keypoints_train2017.json \\
        --images train2017 --output data/coco/train2017
"""
from __future__ import annotations

import os

import numpy as np

from posedual_tf import joints
from posedual_tf.data import records
from posedual_tf.conversion import annotations as read, writer
from posedual_tf.conversion.writer import ConversionError


def clean_box(box, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The reference box clean-up: clip to the image, about 1 px narrower; None if the corners cross."""
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1:
        return x1, y1, x2 - x1, y2 - y1
    return None


def keypoint_categories(data: dict, path: str, keypoint_map: dict[str, str] | None = None,
                        keypoint_names: list[str] | None = None) -> tuple[set[int], joints.JointSet]:
    """Category ids that declare keypoints, and their joint set (``keypoint_names`` replaces the
    categories' names; ``keypoint_map`` places names that are neither COCO nor union names)."""
    cats = read.field(data, "categories", path, types=list)
    with_kp = [c for c in cats if isinstance(c, dict) and c.get("keypoints")]
    if not with_kp:
        raise ConversionError(f"{path}: categories: no category declares 'keypoints'")
    names = {tuple(c["keypoints"]) for c in with_kp}
    if len(names) > 1 and not keypoint_names:
        raise ConversionError(f"{path}: categories: keypoint categories disagree on their 'keypoints' lists")
    try:
        jset = joints.coco_set_for_keypoint_names(keypoint_names or next(iter(names)), keypoint_map)
    except ValueError as e:
        raise ConversionError(f"{path}: categories.keypoints: {e}") from None
    return {read.integer(c, "id", path, "categories") for c in with_kp}, jset


def _count_mismatch(path: str, aid: int, values: int, jset: joints.JointSet, named: bool) -> ConversionError:
    source = "--keypoint-names" if named else "the category's 'keypoints'"
    return ConversionError(
        f"{path}: annotation {aid}: 'keypoints' holds {values} numbers ({values / 3:g} joints) but {source} "
        f"names {jset.num_joints}; give the names of the annotated joints in their order with "
        f"--keypoint-names n1,n2,... (and --keypoint-map name=union_name for names that are not COCO or union names)")


def build_entries(ann_path: str, images_dir: str, max_instances: int = 0,
                  keypoint_map: dict[str, str] | None = None, keypoint_names: list[str] | None = None):
    """Entries, skipped annotations, the joint set and notes of a COCO-format keypoint file.

    The reference's rule, in its order (reference lib/dataset/coco.py: ``_load_coco_keypoint_annotation_kernal``): crowd annotations out; the box
    cleaned and kept if ``area > 0`` and its corners do not cross (``area`` is the annotation's field;
    a file without it, e.g. CrowdPose, falls back to the raw box's ``w * h``, counted in the notes);
    non-keypoint categories out; annotations whose keypoint list is all zeros out. Beyond the
    reference, malformed input is skipped and listed, never stored: a box that is not 4 finite numbers
    with w, h > 0, keypoints that are not finite numbers or have a visibility outside {0, 1, 2}, an
    annotation of an unknown image id, and every image after the first with a duplicated id.
    """
    data = read.load_json(ann_path)
    cat_ids, jset = keypoint_categories(data, ann_path, keypoint_map, keypoint_names)
    images = read.field(data, "images", ann_path, types=list)
    anns = read.field(data, "annotations", ann_path, types=list)
    image_ids = {}
    for i, img in enumerate(images):
        image_ids.setdefault(read.integer(img, "id", ann_path, f"images[{i}]"), i)
    by_image: dict[int, list[dict]] = {}
    skipped, total, area_from_box, miscounted, counted = [], 0, 0, [], 0
    for i, a in enumerate(anns):
        image_id = read.field(a, "image_id", ann_path, f"annotations[{i}]")
        if image_id not in image_ids:
            skipped.append({"annotation": a.get("id", -1), "image_id": image_id, "reason": "unknown image id"})
            continue
        by_image.setdefault(image_id, []).append(a)

    entries = []
    for i, img in enumerate(images):
        where = f"images[{i}]"
        image_id = read.integer(img, "id", ann_path, where)
        name = read.field(img, "file_name", ann_path, where, str)
        width = read.integer(img, "width", ann_path, where)
        height = read.integer(img, "height", ann_path, where)
        if image_ids[image_id] != i:     # its annotations cannot tell the two images apart
            skipped.append({"image": name, "image_id": image_id, "instances": 0,
                            "reason": f"duplicate image id (first at images[{image_ids[image_id]}])"})
            continue
        if width <= 0 or height <= 0:    # the boxes are clipped to this size: every one would come out empty
            skipped.append({"image": name, "image_id": image_id, "instances": len(by_image.get(image_id, [])),
                            "reason": f"{where}: width/height {width}x{height} in the annotation file, expected > 0"})
            continue
        persons = []
        for a in by_image.get(image_id, []):
            if max_instances and total >= max_instances:
                break
            aid = read.integer(a, "id", ann_path, f"an annotation of image {image_id}") if "id" in a else -1

            def skip(reason):
                skipped.append({"annotation": aid, "image_id": image_id, "reason": reason})

            crowd = a.get("iscrowd", 0)
            if crowd not in (0, 1):        # "0" is a string: truthy, it would mark every annotation crowd
                skip(f"iscrowd is {crowd!r}, expected 0 or 1")
                continue
            if crowd:
                skip("crowd")
                continue
            problem = read.box_problem(read.field(a, "bbox", ann_path, f"annotation {aid}"))
            if problem:
                skip(problem)
                continue
            raw = [float(v) for v in a["bbox"]]
            if "area" in a:
                area = read.numbers([a["area"]], 1)
                if area is None:
                    skip("area is not a finite number")
                    continue
                area = float(area[0])
            else:
                area, area_from_box = raw[2] * raw[3], area_from_box + 1
            box = clean_box(raw, width, height)
            if not area > 0:
                skip("area not > 0")
                continue
            if box is None:
                skip("empty box after clipping")
                continue
            if read.integer(a, "category_id", ann_path, f"annotation {aid}") not in cat_ids:
                skip("not a keypoint category")
                continue
            kps = read.field(a, "keypoints", ann_path, f"annotation {aid}", list)
            if len(kps) != 3 * jset.num_joints:     # skipped; an error when no annotation fits (wrong names)
                miscounted.append((aid, len(kps)))
                skip(f"'keypoints' holds {len(kps)} numbers, expected 3 x {jset.num_joints}")
                continue
            counted += 1
            problem = read.keypoints_problem(kps, jset.num_joints)
            if problem:
                skip(problem)
                continue
            kp = np.asarray(kps, np.float32).reshape(-1, 3)
            if kp.max() == 0:
                skip("no keypoints")
                continue
            kp[:, 2] = np.minimum(kp[:, 2], 1.0)
            persons.append(records.Person(box=box, raw_box=raw, score=1.0, ann_id=aid, keypoints=kp))
            total += 1
        entries.append(records.ImageEntry(os.path.join(images_dir, name), name, image_id, height, width, persons))
        if max_instances and total >= max_instances:
            break
    if miscounted and not counted:
        raise _count_mismatch(ann_path, miscounted[0][0], miscounted[0][1], jset, bool(keypoint_names))
    notes = {}
    if area_from_box:
        notes["area_from_box"] = (f"{area_from_box} annotations have no 'area' field; the reference's area > 0 "
                                  "test used the raw box's w * h for them")
    return entries, skipped, jset, notes


def convert(annotations: str, images: str, output: str, max_instances: int = 0, num_shards: int = 0,
            workers: int = 2, keypoint_map: dict[str, str] | None = None,
            keypoint_names: list[str] | None = None) -> dict:
    """Convert one COCO-format keypoint file; returns the manifest."""
    entries, skipped, jset, notes = build_entries(annotations, images, max_instances, keypoint_map, keypoint_names)
    extra = {"source": "coco", "max_instances": max_instances, "notes": notes}
    if keypoint_map:
        extra["keypoint_map"] = keypoint_map
    return writer.write_dataset(entries, output, joint_set=jset, sources=[annotations], skipped=skipped,
                                num_shards=num_shards, workers=workers, extra=extra)
