"""Skeletons on images, left and right limbs in their own colours: one drawing for ``predict --draw``,
``tfrecords_tools.inspect --draw`` and the training pair images.

Example:
    >>> from posedual_tf.drawing import draw_skeleton, LEFT
    >>> import numpy as np
    >>> from posedual_tf import joints
    >>> img = np.zeros((64, 48, 3), np.uint8)
    >>> kp = np.zeros((17, 3)); kp[5] = (10, 20, 1); kp[7] = (12, 40, 1)      # left shoulder, left elbow
    >>> draw_skeleton(img, kp, joints.COCO)
    >>> tuple(int(v) for v in img[30, 11]) == LEFT                          # the left upper arm
    True
"""
from __future__ import annotations

import numpy as np

from posedual_tf import joints

#: BGR colours: the person's left side, right side, and the middle (head, trunk).
LEFT, RIGHT, MIDDLE = (255, 160, 0), (0, 90, 255), (0, 220, 0)


def side(name: str) -> tuple[int, int, int]:
    """The colour of a joint by its name: ``l...`` left, ``r...`` right (not ``root``), else the middle."""
    if name.startswith("l"):
        return LEFT
    if name.startswith("r") and name != "root":
        return RIGHT
    return MIDDLE


def draw_skeleton(img: np.ndarray, keypoints: np.ndarray, jset: joints.JointSet, thickness: int = 2,
                  radius: int = 3) -> None:
    """Draw ``keypoints`` ``[J, 3]`` (x, y, visible > 0) of ``jset`` onto the BGR ``img`` in place: a limb
    between two visible joints takes the colour of its side (left, right; mixed or central limbs the
    middle colour), each visible joint a dot of its side's colour."""
    import cv2

    point = lambda k: (int(round(float(keypoints[k, 0]))), int(round(float(keypoints[k, 1]))))
    for a, b in jset.skeleton:
        if keypoints[a, 2] > 0 and keypoints[b, 2] > 0:
            ca, cb = side(jset.names[a]), side(jset.names[b])
            cv2.line(img, point(a), point(b), ca if ca == cb else MIDDLE, thickness)
    for k in range(keypoints.shape[0]):
        if keypoints[k, 2] > 0:
            cv2.circle(img, point(k), radius, side(jset.names[k]), -1)


def draw_person(img: np.ndarray, box, keypoints: np.ndarray | None, jset: joints.JointSet,
                color=(0, 255, 0)) -> None:
    """A person's box ``(x, y, w, h)`` and, when given, skeleton (:func:`draw_skeleton`) onto ``img``."""
    import cv2

    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
    if keypoints is not None:
        draw_skeleton(img, keypoints, jset)
