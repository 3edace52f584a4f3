"""Predict on images in memory or on disk with any of the three model kinds, into typed results.

:func:`predict` (``posedual_tf.predict``) takes

* a model: a training workdir (its ``config.yaml`` and its ``final`` weights, else its last checkpoint; the
  network of :mod:`posedual_tf.best_net`'s rule), Keras networks with their ``cfg``, a SavedModel folder (or one loaded
  with ``tf.saved_model.load``) written by ``posedual_tf.export``, or a ``.tflite`` file;
* images: numpy arrays of uint8 pixels (H x W x 3 RGB, H x W grey, H x W x 4 RGBA: the alpha is dropped),
  PIL images, file paths or the encoded bytes of a JPEG or PNG file; one, or a list;
* people: ``boxes`` (``[[x, y, w, h], ...]`` in pixels, per image), else a ``detector``: ``"hog"`` (the default:
  OpenCV's HOG pedestrian detector, weak: upright, unoccluded people of 100 px or more), ``"whole"`` (the
  image is one person), a TF2 Object Detection API SavedModel folder, or a function ``rgb -> boxes``.

and returns an :class:`ImagePoses` per image: its :class:`Person` list (17 COCO keypoints x, y, score in image
pixels; box; score), ``to_coco()`` and ``draw()``.

The three kinds compute the same thing: the SavedModel and the Keras networks run the one function
(:func:`posedual_tf.export.serving_functions`); the ``.tflite`` file holds the networks and the decoding,
and the crop is cut here as the SavedModel cuts it (rounded to uint8, the file's input). A ``.tflite`` file
has no flip test: it matches a SavedModel exported with ``--noflip-test`` (within 0.5 px, tested).

Example (random networks of the demo config, the whole image as the person):
    >>> import numpy as np
    >>> import posedual_tf
    >>> cfg = posedual_tf.load_config("demo_dual")
    >>> nets = posedual_tf.build_networks(cfg)
    >>> poses = posedual_tf.predict(nets, np.zeros((120, 80, 3), np.uint8), detector="whole", cfg=cfg)
    >>> poses
    ImagePoses(1 person, 80x120, people from whole)
    >>> person = poses.people[0]
    >>> isinstance(person, posedual_tf.Person), person.box, person.keypoints.shape
    (True, (0.0, 0.0, 80.0, 120.0), (17, 3))
    >>> len(poses.to_coco(image_id=7)[0]["keypoints"]), poses.draw(np.zeros((120, 80, 3), np.uint8)).shape
    (51, (120, 80, 3))
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Callable

import numpy as np

_PATH = (str, os.PathLike)
#: COCO-17's joint count: every result's keypoints are ``[17, 3]``.
NUM_JOINTS = 17


class PredictError(ValueError):
    """A model, image, box or detector predict cannot use (one line)."""


# ---------------------------------------------------------------------------------------------- results

@dataclasses.dataclass(frozen=True)
class Person:
    """One person: ``keypoints [17, 3]`` (x, y, score; COCO order, image pixels), the ``box`` (x, y, w, h) it
    was cut from, ``score`` (the mean joint score above the visibility threshold, times ``box_score``)."""

    keypoints: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    box_score: float = 1.0

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        return f"Person(score {self.score:.3f}, box ({box}), keypoints [17, 3])"

    def to_coco(self, image_id: int) -> dict:
        """This person as one entry of COCO's results format."""
        return {"image_id": int(image_id), "category_id": 1,
                "keypoints": [round(float(v), 3) for v in self.keypoints.ravel()],
                "score": float(self.score), "bbox": [float(v) for v in self.box]}


@dataclasses.dataclass(frozen=True)
class ImagePoses:
    """The people of one image: ``people``, its ``size`` (width, height), where its boxes came from
    (``people_from``: ``boxes``, ``hog``, ``whole``, ``detector``) and the indices of boxes that lay outside
    the image or had no area (``outside``: no person for them)."""

    people: tuple[Person, ...]
    size: tuple[int, int]
    people_from: str
    outside: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.people)

    def __repr__(self) -> str:
        n = len(self.people)
        return (f"ImagePoses({n} {'person' if n == 1 else 'people'}, {self.size[0]}x{self.size[1]}, people from "
                f"{self.people_from}" + (f", {len(self.outside)} boxes outside" if self.outside else "") + ")")

    def __iter__(self):
        return iter(self.people)

    def to_coco(self, image_id: int = 1) -> list[dict]:
        """Every person as COCO results entries (what ``evaluation.coco.evaluate_coco`` reads)."""
        return [p.to_coco(image_id) for p in self.people]

    def draw(self, image, min_score: float = 0.2) -> np.ndarray:
        """A copy of ``image`` (any form :func:`predict` takes) with every person's box and the joints
        scoring above ``min_score``, as uint8 RGB pixels."""
        import cv2

        from posedual_tf import joints
        from posedual_tf.drawing import draw_person

        rgb = load_image(image).rgb
        if rgb.shape[1::-1] != tuple(self.size):
            raise PredictError(f"draw: the image is {rgb.shape[1]}x{rgb.shape[0]}, these poses are of a "
                               f"{self.size[0]}x{self.size[1]} image")
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for p in self.people:
            kp = np.concatenate([p.keypoints[:, :2], (p.keypoints[:, 2:] > min_score).astype(np.float32)], 1)
            draw_person(bgr, p.box, kp, joints.COCO)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------- images

@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An input image: ``data`` the encoded bytes the model decodes, ``rgb`` its uint8 pixels (upright), and
    the EXIF ``orientation`` the file had (1: upright already; the pixels and ``data`` are turned upright)."""

    data: bytes
    rgb: np.ndarray
    orientation: int = 1


def load_image(image, name: str = "image") -> LoadedImage:
    """One image in any form predict takes (module docstring); PredictError or TypeError in one line
    starting with ``name`` (the argument it came from)."""
    try:
        return _load_image(image)
    except (TypeError, ValueError) as e:
        text = str(e)
        if name != "image" and text.startswith("image: "):
            text = f"{name}: " + text[len("image: "):]
            raise (TypeError if isinstance(e, TypeError) else PredictError)(text) from None
        raise


def _load_image(image) -> LoadedImage:
    import cv2

    from posedual_tf import files
    from posedual_tf.data import records

    if isinstance(image, _PATH):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise PredictError(f"image: no file at {path}")
        try:
            data = files.read_bounded(path)
        except OSError as e:
            raise PredictError(f"image: {path}: unreadable ({e.strerror})") from None
        except ValueError as e:
            raise PredictError(f"image: {path}: {e}") from None
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        rgb = _pixels(image)
        return LoadedImage(_png(rgb), rgb)
    if not data:
        raise PredictError(f"image: {path}: empty file" if isinstance(image, _PATH) else "image: empty bytes")
    if records.decoded_size(data) is None:          # the model's decoder decides (OpenCV may fill a cut JPEG)
        raise PredictError("image: undecodable (truncated or damaged: TensorFlow's image decoder cannot read it)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)     # EXIF orientation applied
    if bgr is None:
        raise PredictError("image: not a decodable image")
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    orientation = records.exif_orientation(data)
    if orientation != 1:       # the model sees the photo upright, as its owner does
        data = _png(rgb)
    return LoadedImage(data, rgb, orientation)


def _pixels(image) -> np.ndarray:
    """uint8 RGB pixels ``[H, W, 3]`` of a numpy array or PIL image, checked."""
    what = f"{type(image).__module__}.{type(image).__name__}"
    if type(image).__module__.startswith("PIL.") and hasattr(image, "convert"):
        image = np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a numpy array of uint8 pixels, a PIL image, a file path or the encoded "
                        f"bytes of a JPEG or PNG file, got {what}")
    if image.dtype != np.uint8:
        hint = "; for floats in [0, 1]: (x * 255).round().astype(np.uint8)" if image.dtype.kind == "f" else ""
        raise PredictError(f"image: expected uint8 pixels (0-255), got a {image.dtype} array{hint}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or image.ndim == 3 and image.shape[2] in (3, 4)) or min(image.shape[:2]) < 1:
        raise PredictError(f"image: expected H x W x 3 (RGB), H x W (grey) or H x W x 4 (RGBA) pixels, got shape "
                           f"{tuple(image.shape)}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of uint8 RGB pixels: the model sees these pixels exactly."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise PredictError(f"image: OpenCV could not encode the {tuple(rgb.shape)} pixels as PNG")
    return encoded.tobytes()


def box_array(boxes, where: str = "boxes") -> np.ndarray:
    """``[[x, y, w, h], ...]`` (or one box) as a float64 ``[N, 4]`` array of finite numbers; PredictError."""
    try:
        if isinstance(boxes, (str, bytes)):
            raise TypeError
        arr = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: expected [[x, y, w, h], ...] numbers, got {type(boxes).__name__}") from None
    if arr.size == 0 or arr.ndim == 1 and arr.size == 4:
        arr = arr.reshape(-1, 4)
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.isfinite(arr).all():
        raise PredictError(f"{where}: expected [[x, y, w, h], ...] (N x 4 finite numbers), got shape "
                           f"{tuple(arr.shape)}" + ("" if np.isfinite(arr).all() else " with non-finite values"))
    return arr


# ---------------------------------------------------------------------------------------------- models

class _Function:
    """The SavedModel's ``predict_image`` computation: a SavedModel's signature or the same function built
    for Keras networks."""

    def __init__(self, fn, what: str):
        self.fn, self.what = fn, what

    def __call__(self, image: LoadedImage, boxes: np.ndarray):
        import tensorflow as tf

        out = self.fn(image_bytes=tf.constant(image.data), boxes=tf.constant(boxes, tf.float32))
        return out["keypoints"].numpy(), out["scores"].numpy(), out["valid"].numpy()


class _TFLite:
    """A ``.tflite`` file of :mod:`posedual_tf.tflite`: crops cut as the SavedModel cuts them."""

    def __init__(self, path: str, visibility: float):
        from posedual_tf import tflite

        try:
            self.interp = tflite.interpreter(path)
        except (ValueError, RuntimeError) as e:
            raise PredictError(f"model: {path}: not a TFLite file ({str(e).splitlines()[0]})") from None
        inp = self.interp.get_input_details()[0]
        shape = tuple(int(v) for v in inp["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or inp["dtype"] != np.uint8:
            raise PredictError(f"model: {path}: takes {inp['dtype'].__name__}{list(shape)}; expected the uint8 "
                               "[1, H, W, 3] crop of a posedual_tf TFLite export")
        self.size = (shape[2], shape[1])
        self.visibility, self.what = visibility, f"TFLite {path}"

    def __call__(self, image: LoadedImage, boxes: np.ndarray):
        import tensorflow as tf

        from posedual_tf import export
        from posedual_tf.data import records

        w, h = self.size
        img = tf.cast(records.decode_image(tf.constant(image.data)), tf.float32)
        size = tf.cast(tf.shape(img)[:2], tf.float32)
        clipped, valid = export.clip_boxes(tf.constant(boxes, tf.float32), size[1], size[0])
        if len(boxes) == 0:
            return np.zeros([0, NUM_JOINTS, 3], np.float32), np.zeros([0], np.float32), valid.numpy()
        crops, _, _, inv = export.cut_people(img, clipped, (w, h))
        from posedual_tf import tflite

        crops = tf.cast(tf.clip_by_value(tf.round(crops), 0.0, 255.0), tf.uint8).numpy()
        kps = tflite.run_interpreter(self.interp, crops).astype(np.float64)   # [N, 17, 3]: y, x normalised, score
        crop_xy1 = np.stack([kps[..., 1] * w, kps[..., 0] * h, np.ones(kps.shape[:2])], -1)
        xy = np.einsum("nij,nkj->nki", inv.numpy().astype(np.float64), crop_xy1)   # crop pixels -> image pixels
        visible = kps[..., 2] > self.visibility
        scores = np.where(visible.any(-1), (kps[..., 2] * visible).sum(-1) / np.maximum(visible.sum(-1), 1), 0.0)
        keep = valid.numpy()
        out = np.concatenate([xy, kps[..., 2:]], -1) * keep[:, None, None]
        return out.astype(np.float32), (scores * keep).astype(np.float32), keep


#: The runners of models given by path, the last few, keyed by what they were made from (the path, the
#: modification time of what they read, the network): a notebook calling predict image by image loads a
#: SavedModel, a .tflite file or a workdir's networks once, and again when that file changes.
_RUNNERS: dict = {}
_KEEP = 4


def model_runner(model, cfg=None, net: str = "best", say=print):
    """The computation of ``model`` (module docstring): ``(image, boxes) -> keypoints, scores, valid``."""
    if not isinstance(model, _PATH) or cfg is not None:
        return _runner(model, cfg, net, say)
    path = os.path.realpath(os.fspath(model))
    read = [os.path.join(path, n) for n in ("saved_model.pb", "final", "train_result.json")] + [path]
    key = (path, net, tuple(os.stat(p).st_mtime_ns for p in read if os.path.exists(p)))
    if key not in _RUNNERS:
        runner = _runner(model, cfg, net, say)
        if len(_RUNNERS) >= _KEEP:
            del _RUNNERS[next(iter(_RUNNERS))]          # the oldest
        _RUNNERS[key] = runner
    return _RUNNERS[key]


def _runner(model, cfg, net: str, say):
    """:func:`model_runner`, made anew."""
    from posedual_tf import config as config_module

    if isinstance(model, _PATH):
        path = os.fspath(model)
        if path.endswith(".tflite"):
            if not os.path.isfile(path):
                raise PredictError(f"model: no file at {path}")
            from posedual_tf.config_schema import TestConfig

            return _TFLite(path, (cfg.test if cfg is not None else TestConfig()).in_vis_thre)
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            import tensorflow as tf

            return _signature(tf.saved_model.load(path), path)
        if os.path.isfile(os.path.join(path, "config.yaml")):          # a training workdir
            from posedual_tf import checkpoints

            cfg = cfg or config_module.load(os.path.join(path, "config.yaml"))
            weights = os.path.join(path, "final") if os.path.isdir(os.path.join(path, "final")) else path
            nets, chosen, why = checkpoints.exported_networks(cfg, weights, net)
            if say is not None:
                from posedual_tf import best_net, files

                for line in [f"predict: {files.shown_path(path)}"] + best_net.describe(chosen, why):
                    say(line)
            return _networks(cfg, nets, f"networks of {path}")
        raise PredictError(f"model: {path}: expected a training workdir (config.yaml), a SavedModel folder "
                           "(saved_model.pb) or a .tflite file")
    if hasattr(model, "signatures"):
        return _signature(model, "the loaded SavedModel")
    _check_kinds(model, None)
    if cfg is None:
        raise PredictError("model: Keras networks need their config: predict(nets, images, cfg=cfg)")
    from posedual_tf import best_net

    nets = list(model) if isinstance(model, (list, tuple)) else [model]
    chosen = "1" if net == "best" else best_net.resolve(net, "", len(nets))[0]    # no run holds the rule's record
    return _networks(cfg, nets if chosen == "ensemble" else [nets[int(chosen) - 1]], "the given networks")


def _networks(cfg, nets, what: str) -> _Function:
    """The SavedModel's ``predict_image`` function, built for ``nets`` in this process."""
    from posedual_tf import export

    return _Function(export.serving_functions(cfg, nets, cfg.test.flip_test, cfg.test.post_process)[1], what)


def _signature(loaded, what: str) -> _Function:
    fn = loaded.signatures.get("predict_image")
    if fn is None:
        raise PredictError(f"model: {what} has no predict_image signature (it has {sorted(loaded.signatures)}); "
                           "export it with python -m posedual_tf.export")
    return _Function(fn, what)


# ---------------------------------------------------------------------------------------------- people

def people_finder(detector) -> tuple[Callable[[np.ndarray], list], str]:
    """``rgb -> [(box, score)]`` and its name for ``detector`` (module docstring)."""
    if detector is None or detector == "hog":
        from posedual_tf.detector import hog_people, hog_too_small

        def hog(rgb):           # an image under its window finds nobody (predict says why)
            return [] if hog_too_small(rgb.shape) else hog_people(np.ascontiguousarray(rgb[..., ::-1]))
        return hog, "hog"
    if detector == "whole":
        return (lambda rgb: [([0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0])], 1.0)]), "whole"
    if isinstance(detector, _PATH):
        from posedual_tf.detector import ODDetector

        od = ODDetector(os.fspath(detector))
        return (lambda rgb: od(np.ascontiguousarray(rgb[..., ::-1]))), "detector"
    if callable(detector):
        def call(rgb):
            found = detector(rgb)
            out = []
            for item in found:
                if isinstance(item, tuple) and len(item) == 2:
                    box, score = item
                else:
                    box, score = item, 1.0
                out.append((box_array(box, "detector result")[0].tolist(), float(score)))
            return out
        return call, "detector"
    raise TypeError(f"detector: expected 'hog', 'whole', an Object Detection API SavedModel folder or a function "
                    f"rgb -> [[x, y, w, h], ...], got {type(detector).__name__}")


def _check_kinds(model, detector) -> None:
    """TypeError (one line) for a model or detector of no kind predict takes, before any work."""
    if not isinstance(model, _PATH) and not hasattr(model, "signatures"):
        import keras

        nets = list(model) if isinstance(model, (list, tuple)) else [model]
        if not nets or not all(isinstance(n, keras.Model) for n in nets):
            raise TypeError(f"model: expected a workdir, a SavedModel, a .tflite file or Keras networks, got "
                            f"{type(model).__name__}")
    if not (detector is None or isinstance(detector, _PATH) or callable(detector)):
        raise TypeError(f"detector: expected 'hog', 'whole', an Object Detection API SavedModel folder or a "
                        f"function rgb -> [[x, y, w, h], ...], got {type(detector).__name__}")


def predict(model, images, boxes=None, detector=None, *, cfg=None, net: str = "best", say=print):
    """See the module docstring; one :class:`ImagePoses` for one image, a list for a list.
    """
    _check_kinds(model, detector)
    many = isinstance(images, (list, tuple))
    items = list(images) if many else [images]
    if boxes is not None:
        if detector is not None:
            raise PredictError("give boxes or detector, not both")
        per_image = list(boxes) if many else [boxes]
        if len(per_image) != len(items):
            raise PredictError(f"boxes: {len(per_image)} lists of boxes for {len(items)} images; give one list "
                               "per image")
        given = [box_array(b, f"boxes[{i}]" if many else "boxes") for i, b in enumerate(per_image)]
    loaded = [load_image(im, f"images[{i}]" if many else "images") for i, im in enumerate(items)]   # before any model work
    runner = model_runner(model, cfg, net, say)
    find, source = (None, "boxes") if boxes is not None else people_finder(detector)
    results = []
    for i, image in enumerate(loaded):
        if boxes is not None:
            people = [(b.tolist(), 1.0) for b in given[i]]      # the boxes as given (float64)
        else:
            people = find(image.rgb)
        arr = np.array([b for b, _ in people], np.float64).reshape(-1, 4)
        kps, scores, valid = runner(image, arr)
        persons = tuple(Person(kp, tuple(float(v) for v in b), float(s) * bs, bs)
                        for (b, bs), kp, s, ok in zip(people, kps, scores, valid) if ok)
        outside = tuple(k for k, ok in enumerate(valid) if not ok)
        results.append(ImagePoses(persons, (image.rgb.shape[1], image.rgb.shape[0]), source, outside))
        if source == "hog" and not people:
            from posedual_tf.detector import hog_too_small

            why = hog_too_small(image.rgb.shape) or "it finds upright people of 100 px or more"
            print(f"warning: predict: OpenCV's HOG detector found nobody in image {i + 1}\n"
                  f"  ({why}); give boxes= or detector=", file=sys.stderr)
    return results if many else results[0]
