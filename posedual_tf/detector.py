"""People boxes: from a detector the user brings (a SavedModel with the TF2 Object Detection API's signature),
or from OpenCV's HOG pedestrian detector, the weak default that needs no download (:func:`hog_people`).

The OD API's exported models (SSD MobileNet, EfficientDet, CenterNet, Faster R-CNN from the TF2 Detection
Model Zoo) take one ``uint8`` image ``[1, H, W, 3]`` (RGB) and return ``detection_boxes [1, N, 4]``
(ymin, xmin, ymax, xmax, normalised to the image), ``detection_classes [1, N]`` (COCO label-map ids:
person is 1) and ``detection_scores [1, N]``. Nothing is downloaded: the user gives the folder.

Example:
    >>> import cv2                                                                          # doctest: +SKIP
    >>> from posedual_tf.detector import ODDetector                                         # doctest: +SKIP
    >>> bgr_image = cv2.imread("photo.jpg")                                                 # doctest: +SKIP
    >>> find = ODDetector("ssd_mobilenet_v2/saved_model", person_class=1, min_score=0.5)   # doctest: +SKIP
    >>> find(bgr_image)                 # [([x, y, w, h], score), ...] in pixels             # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np

#: The window of OpenCV's default people detector (w, h): on a smaller image it aborts the process.
HOG_WINDOW = (64, 128)


def hog_too_small(shape) -> str | None:
    """Why an image of ``shape`` (H, W, ...) cannot go to the HOG detector, or None."""
    h, w = shape[:2]
    if h < HOG_WINDOW[1] or w < HOG_WINDOW[0]:
        return f"{w}x{h} px is smaller than the HOG detector's {HOG_WINDOW[0]}x{HOG_WINDOW[1]} window"
    return None


def hog_people(bgr: np.ndarray, min_score: float = 0.0, max_side: int = 800) -> list[tuple[list[float], float]]:
    """People boxes ``(x, y, w, h)`` and scores from OpenCV's HOG + linear SVM pedestrian detector
    (Dalal and Triggs), run on the image scaled to ``max_side``; score = sigmoid(SVM margin). It finds
    upright, unoccluded people of about 100 px or more, and misses many others. The image must not be
    smaller than :data:`HOG_WINDOW` (:func:`hog_too_small`)."""
    import cv2

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    s = min(1.0, max_side / max(bgr.shape[:2]))
    small = cv2.resize(bgr, (round(bgr.shape[1] * s), round(bgr.shape[0] * s))) if s < 1 else bgr
    rects, weights = hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
    return [([float(v) / s for v in r], 1.0 / (1.0 + math.exp(-float(w))))
            for r, w in zip(rects, np.asarray(weights).ravel()) if float(w) > min_score]

#: The outputs a detector's ``serving_default`` must have.
OD_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores")


class DetectorError(ValueError):
    """A --detector that is not a SavedModel with the Object Detection API's signature (one line)."""


class ODDetector:
    """``bgr image -> [([x, y, w, h], score)]`` of the detections of ``person_class`` scoring at least
    ``min_score``, from the SavedModel at ``path``; :class:`DetectorError` when its signature differs."""

    def __init__(self, path: str, person_class: int = 1, min_score: float = 0.5):
        import tensorflow as tf

        where = f"--detector {path}"
        try:
            model = tf.saved_model.load(path)
        except (OSError, ValueError) as e:
            raise DetectorError(f"{where}: not a SavedModel ({str(e).splitlines()[0]})") from None
        signature = model.signatures.get("serving_default")
        if signature is None:
            raise DetectorError(f"{where}: has no serving_default signature (it has {sorted(model.signatures)}); "
                                "expected a TF2 Object Detection API export")
        inputs = signature.structured_input_signature[1]
        spec = next(iter(inputs.values()), None)
        if len(inputs) != 1 or spec.dtype != tf.uint8 or spec.shape.rank != 4 or spec.shape[-1] not in (3, None):
            shown = {k: f"{v.dtype.name}{v.shape}" for k, v in inputs.items()}
            raise DetectorError(f"{where}: serving_default takes {shown}; expected one uint8 image [1, H, W, 3] "
                                "(a TF2 Object Detection API export)")
        missing = [k for k in OD_OUTPUTS if k not in signature.structured_outputs]
        if missing:
            raise DetectorError(f"{where}: serving_default returns {sorted(signature.structured_outputs)}, not "
                                f"{', '.join(missing)}; expected a TF2 Object Detection API export "
                                f"({', '.join(OD_OUTPUTS)})")
        self.model, self.signature, self.input_name = model, signature, next(iter(inputs))
        self.path = path
        self.person_class, self.min_score = int(person_class), float(min_score)

    def __call__(self, bgr: np.ndarray) -> list[tuple[list[float], float]]:
        import tensorflow as tf

        h, w = bgr.shape[:2]
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        out = self.signature(**{self.input_name: tf.constant(rgb[None], tf.uint8)})
        boxes, classes, scores = (np.asarray(out[k].numpy(), np.float64) for k in OD_OUTPUTS)
        n = scores.size
        if boxes.size != 4 * n or classes.size != n:
            raise DetectorError(f"--detector {self.path}: returned {boxes.shape} boxes, {classes.shape} classes and "
                                f"{scores.shape} scores for this {w}x{h} image; expected [1, N, 4], [1, N] and [1, N]")
        boxes, classes, scores = boxes.reshape(-1, 4), classes.reshape(-1), scores.reshape(-1)
        bad = int(np.sum(~np.isfinite(boxes).all(axis=1) | ~np.isfinite(scores) | ~np.isfinite(classes)))
        if bad:
            raise DetectorError(f"--detector {self.path}: returned {bad} of {n} detections with NaN or infinite "
                                f"numbers for this {w}x{h} image; its outputs are not boxes")
        classes = np.rint(classes).astype(int)
        people = []
        for (y0, x0, y1, x1), c, s in zip(boxes, classes, scores):
            if c == self.person_class and s >= self.min_score:
                people.append(([float(x0 * w), float(y0 * h), float((x1 - x0) * w), float((y1 - y0) * h)], float(s)))
        return people
