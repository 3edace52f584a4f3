"""A synthetic people dataset in COCO format: articulated figures with the 17 COCO keypoints.

Each image has a textured background, 1-3 figures (a kinematic skeleton with random pose, size,
limb width and colour) and random occluders. Visibility follows what was drawn: 2 where the
joint's own dot is on top, 1 where another figure, an occluder or another part covers it,
0 (with x = y = 0) outside the image. Written as JPEGs plus COCO-format keypoint json, so the
ordinary ``coco`` converter and COCO evaluation are the path exercised.

    python -m tfrecords_tools.synthetic --output DIR --num-images 200 --seed 0 [--split-name train]

writes ``DIR/<split>/*.jpg``, ``DIR/<split>.json`` (keypoints), ``DIR/<split>_image_info.json``
(images only, the unlabelled-set style) and ``DIR/<split>_detections.json`` (jittered boxes with
scores, the WILD-set style).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from posedual_tf import joints

# COCO order: nose leye reye lear rear lsho rsho lelb relb lwri rwri lhip rhip lkne rkne lank rank
LIMBS = ((5, 6), (11, 12), (5, 11), (6, 12), (5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15),
         (12, 14), (14, 16))
#: Joints and limbs of the figure's left side are drawn in a darker shade, so left and right differ.
LEFT_JOINTS = (1, 3, 5, 7, 9, 11, 13, 15)


def _unit(angle: float) -> np.ndarray:
    """Direction of ``angle`` radians from straight down (image y grows downward)."""
    return np.array([math.sin(angle), math.cos(angle)])


def figure_keypoints(rng: np.random.Generator, height: float, hip: np.ndarray) -> tuple[np.ndarray, float]:
    """17 COCO keypoints of a figure of ``height`` px whose pelvis is at ``hip``; and its head radius."""
    k = np.zeros((17, 2))
    lean = rng.normal(0, 0.15)
    up = -_unit(lean)                                  # pelvis -> neck direction
    side = np.array([-up[1], up[0]])                   # figure's left is image right (facing us)
    facing = 1.0 if rng.random() < 0.8 else -1.0       # sometimes seen from the back
    neck = hip + up * 0.30 * height
    shoulder_w, hip_w = 0.11 * height, 0.07 * height
    k[5], k[6] = neck + side * shoulder_w * facing, neck - side * shoulder_w * facing
    k[11], k[12] = hip + side * hip_w * facing, hip - side * hip_w * facing
    head_r = 0.065 * height
    head = neck + up * 0.11 * height
    k[0] = head + side * rng.normal(0, 0.2) * head_r * facing + up * -0.1 * head_r
    for i, s in ((1, 1), (2, -1)):
        k[i] = head + side * s * 0.38 * head_r * facing + up * 0.25 * head_r
    for i, s in ((3, 1), (4, -1)):
        k[i] = head + side * s * 0.75 * head_r * facing
    for (a, b, c), s in (((5, 7, 9), 1), ((6, 8, 10), -1)):
        upper = lean + s * facing * rng.uniform(0.1, 2.6)
        lower = upper + s * facing * rng.uniform(-0.3, 2.0)
        k[b] = k[a] + _unit(upper) * 0.17 * height
        k[c] = k[b] + _unit(lower) * 0.15 * height
    for (a, b, c), s in (((11, 13, 15), 1), ((12, 14, 16), -1)):
        thigh = lean + s * facing * rng.uniform(-0.5, 0.9)
        shin = thigh - s * facing * rng.uniform(-0.2, 1.2) * 0.6
        k[b] = k[a] + _unit(thigh) * 0.24 * height
        k[c] = k[b] + _unit(shin) * 0.23 * height
    return k, head_r


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-saturation textured background (smooth noise + stripes)."""
    import cv2

    base = rng.uniform(60, 190)
    noise = cv2.resize(rng.normal(0, 25, (h // 8 + 1, w // 8 + 1)).astype(np.float32), (w, h))
    fine = rng.normal(0, 6, (h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = 12 * np.sin((xx * rng.uniform(-0.3, 0.3) + yy * rng.uniform(-0.3, 0.3)) * rng.uniform(0.2, 0.8))
    grey = base + noise + fine + stripes
    tint = rng.uniform(-10, 10, 3)
    return np.clip(grey[..., None] + tint, 0, 255).astype(np.uint8)


def render_image(rng: np.random.Generator, h: int, w: int, max_people: int = 3):
    """One image: BGR uint8, and a list of people ``{keypoints [17, 3], bbox, colour}``."""
    import cv2

    img = background(rng, h, w)
    label = np.full((h, w), -1, np.int32)
    people = []
    for pid in range(int(rng.integers(1, max_people + 1))):
        height = rng.uniform(0.4, 0.85) * h
        hip = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.35, 0.75) * h])
        kp, head_r = figure_keypoints(rng, height, hip)
        kp = np.round(kp, 2)                            # what the json stores
        pts = np.floor(kp + 0.5).astype(int)            # the pixel each joint is drawn and judged at
        hue = rng.uniform(0, 180)
        colour = cv2.cvtColor(np.uint8([[[hue, 230, 240]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        dark = cv2.cvtColor(np.uint8([[[hue, 230, 120]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        joint_colour = [dark if j in LEFT_JOINTS else colour for j in range(17)]
        width = max(2, int(round(rng.uniform(0.035, 0.06) * height)))
        head = np.floor((kp[3] + kp[4]) / 2 + 0.5).astype(int)
        cv2.circle(img, tuple(head), int(round(head_r)), colour, -1)
        cv2.circle(label, tuple(head), int(round(head_r)), pid * 32, -1)
        for a, b in LIMBS:
            limb_colour = dark if a in LEFT_JOINTS and b in LEFT_JOINTS else colour
            cv2.line(img, tuple(pts[a]), tuple(pts[b]), limb_colour, width, cv2.LINE_8)
            cv2.line(label, tuple(pts[a]), tuple(pts[b]), pid * 32, width, cv2.LINE_8)
        for j, p in enumerate(pts):
            r = max(2, width // 2 + 1) if j > 4 else max(2, int(round(head_r * 0.25)))
            cv2.circle(img, tuple(p), r, joint_colour[j], -1)
            cv2.circle(label, tuple(p), r, pid * 32 + j + 1, -1)
        people.append({"kp": kp, "colours": joint_colour, "head_r": head_r})
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        x1, y1 = x0 + int(rng.uniform(0.08, 0.3) * w), y0 + int(rng.uniform(0.08, 0.3) * h)
        grey = int(rng.uniform(30, 220))
        cv2.rectangle(img, (x0, y0), (x1, y1), (grey, grey, grey), -1)
        cv2.rectangle(label, (x0, y0), (x1, y1), -2, -1)
    out = []
    for pid, p in enumerate(people):
        kp = np.zeros((17, 3))
        for j, (x, y) in enumerate(p["kp"]):
            xi, yi = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            if 0 <= xi < w and 0 <= yi < h:
                # visible only where this joint's own dot is on top (self-occlusion counts as occluded)
                kp[j] = (x, y, 2 if label[yi, xi] == pid * 32 + j + 1 else 1)
        vis = kp[:, 2] > 0
        if vis.sum() < 3:
            continue
        lo = np.maximum(p["kp"].min(0) - p["head_r"], 0)
        hi = np.minimum(p["kp"].max(0) + p["head_r"], [w - 1, h - 1])
        out.append({"keypoints": kp, "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                    "joint_colours": p["colours"]})
    return img, out


def generate(output: str, num_images: int, seed: int, split: str = "train", size=(128, 128),
             first_image_id: int = 1, max_people: int = 3) -> dict:
    """Write one split; returns the COCO keypoint json it wrote."""
    import cv2

    rng = np.random.default_rng(seed)
    img_dir = os.path.join(output, split)
    os.makedirs(img_dir, exist_ok=True)
    h, w = size
    images, anns, dets = [], [], []
    ann_id = first_image_id * 100
    for i in range(num_images):
        image_id = first_image_id + i
        img, people = render_image(rng, h, w, max_people)
        name = f"{image_id:012d}.jpg"
        tmp = os.path.join(img_dir, name + ".tmp.jpg")
        cv2.imwrite(tmp, img, [cv2.IMWRITE_JPEG_QUALITY, 95,
                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
        os.replace(tmp, os.path.join(img_dir, name))
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for p in people:
            ann_id += 1
            kp = p["keypoints"]
            x, y, bw, bh = p["bbox"]
            anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                         "bbox": [round(v, 2) for v in p["bbox"]], "area": round(bw * bh, 2),
                         "num_keypoints": int((kp[:, 2] > 0).sum()),
                         "keypoints": [round(float(v), 2) if j % 3 != 2 else int(v) for j, v in enumerate(kp.ravel())],
                         "joint_colours": p["joint_colours"]})
            jitter = rng.normal(0, 0.05, 4) * [bw, bh, bw, bh]
            dets.append({"image_id": image_id, "category_id": 1, "score": float(rng.uniform(0.6, 1.0)),
                         "bbox": [round(float(v), 2) for v in np.array(p["bbox"]) + jitter]})
    category = {"id": 1, "name": "person", "supercategory": "person",
                "keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                              "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                              "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"],
                "skeleton": [[a + 1, b + 1] for a, b in joints.COCO.skeleton]}
    info = {"description": f"posedual_tf synthetic people, split {split}, seed {seed}"}
    data = {"info": info, "images": images, "annotations": anns, "categories": [category]}
    for path, obj in ((f"{split}.json", data),
                      (f"{split}_image_info.json", {"info": info, "images": images, "categories": [category]}),
                      (f"{split}_detections.json", dets)):
        full = os.path.join(output, path)
        with open(full + ".tmp", "w") as f:
            json.dump(obj, f)
        os.replace(full + ".tmp", full)
    return data
