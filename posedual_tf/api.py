"""The Python API, also importable from the package itself (``posedual_tf.fit`` is :func:`fit`).

(``evaluate_checkpoint``, not ``evaluate``: ``posedual_tf.evaluate`` is the command-line module, and importing it
would hide a function of that name.)

Load a config, prepare its data, train, evaluate, export and predict on one image, in a notebook or a
script; the command lines (``python -m posedual_tf.train`` and the others) are thin layers over these.

Example (the embedded demo, made tiny: 2 steps of two 1/8-width networks, a minute on 2 CPU cores):
    >>> import os, tempfile
    >>> import posedual_tf
    >>> workdir = tempfile.mkdtemp()
    >>> cfg = posedual_tf.load_config("demo_dual", [
    ...     f"workdir={workdir}", "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4",
    ...     "model.width_multiplier=0.125", "data.synthetic.labelled_images=12",
    ...     "data.synthetic.unlabelled_images=12", "data.synthetic.val_images=4"])
    >>> posedual_tf.prepare_demo_data(cfg)                          # doctest: +ELLIPSIS
    generating ...
    >>> result = posedual_tf.fit(cfg, progress="none")              # doctest: +ELLIPSIS
    model.pretrained: none: net1, net2 start from random weights
    ...
    >>> result["final_step"], sorted(result["metrics"])
    (2, ['_counts', 'ensemble', 'net1', 'net2'])
    >>> metrics = posedual_tf.evaluate_checkpoint(cfg, os.path.join(workdir, "final"))
    >>> 0.0 <= metrics["ensemble"]["AP"] <= 1.0
    True
    >>> saved = posedual_tf.export_saved_model(cfg, os.path.join(workdir, "final"), os.path.join(workdir, "model"))
    >>> image = open(os.path.join(workdir, "data", "synthetic", "val", "000000500000.jpg"), "rb").read()
    >>> people = posedual_tf.predict_image(saved, image, [[10.0, 20.0, 40.0, 80.0]])
    >>> people["keypoints"].shape                                   # COCO-17 (x, y, score) per box
    (1, 17, 3)
"""
from __future__ import annotations

import os
from typing import Sequence

from posedual_tf.config import Config

_PATH = (str, os.PathLike)


def _expect(name: str, value, kinds, what: str, choices=None) -> None:
    """A one-line TypeError (ValueError for a value outside ``choices``) naming the parameter, raised
    before any work: every function below checks all its arguments first."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__} {shown}")
    if choices is not None and value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def _expect_config(cfg) -> None:
    _expect("cfg", cfg, Config, "a Config (posedual_tf.load_config('demo_dual'), say)")


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """A named config (``coco1k_dual``, ``demo_dual``, ...; :func:`posedual_tf.config.available`) or a YAML
    path (``base:`` included), with ``key=value`` overrides as ``--set`` takes them.

    Example:
        >>> load_config("coco1k_dual", ["train.batch_size=8"]).train.batch_size
        8
    """
    from posedual_tf import config

    _expect("name_or_path", name_or_path, _PATH, "a config name or a YAML path")
    _expect("overrides", overrides, (list, tuple), "a list of 'key=value' strings (a list even for one)")
    for o in overrides:
        _expect("overrides", o, str, "'key=value' strings")
    return config.load(os.fspath(name_or_path), list(overrides))


def prepare_demo_data(cfg: Config, workers: int = 1) -> None:
    """Generate and convert a demo config's synthetic people (whatever split is missing); nothing for
    other configs, whose records come from the converters (``python -m tfrecords_tools.coco`` ...)."""
    from posedual_tf import demo

    _expect_config(cfg)
    _expect("workers", workers, int, "a number of processes (int >= 1)")
    if workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers}")
    if demo.is_demo(cfg):
        demo.prepare_data(cfg, workers=workers)


def fit(cfg: Config, progress: str = "epochs") -> dict:
    """Train ``cfg`` in ``cfg.workdir`` (resuming from its last checkpoint) and return what
    ``train_result.json`` holds; see :func:`posedual_tf.training.run` for the process-wide state it sets."""
    from posedual_tf import training

    _expect_config(cfg)
    _expect("progress", progress, str, "a progress style", ("bar", "lines", "epochs", "none"))
    return training.run(cfg, progress=progress)


def evaluate_checkpoint(cfg: Config, checkpoint: str, output: str | None = None, split: str = "val") -> dict:
    """Metrics of every head (``net1``, and ``net2``/``ensemble`` for PoseDual) of ``checkpoint`` (a weights
    folder, a training workdir or a ``.pth`` file) on ``data.<split>``; results/metrics json written to
    ``output`` when given."""
    from posedual_tf import checkpoints
    from posedual_tf.task import PoseTask

    _expect_config(cfg)
    _expect("checkpoint", checkpoint, _PATH, "a weights folder, a training workdir or a .pth file")
    if output is not None:
        _expect("output", output, _PATH, "a folder (or None)")
    _expect("split", split, str, "a data split", ("val", "unlabelled_eval"))
    nets, _ = checkpoints.load_networks(cfg, os.fspath(checkpoint))
    return PoseTask(cfg).validate(nets, output, split=split)


def build_networks(cfg: Config) -> list:
    """The config's Keras network(s), float32, random weights (one; two for PoseDual)."""
    from posedual_tf.models import builder

    _expect_config(cfg)
    return builder.build_networks(cfg, policy="float32")


def export_saved_model(cfg: Config, checkpoint: str, output: str, net: str = "1", overwrite: bool = False) -> str:
    """Write network ``net`` (``1``, ``2`` or ``ensemble``) of ``checkpoint`` as a SavedModel with the
    ``serving_default`` (crops) and ``predict_image`` (encoded image + boxes) signatures; returns its folder."""
    from posedual_tf import export

    _expect_config(cfg)
    _expect("checkpoint", checkpoint, _PATH, "a weights folder, a training workdir or a .pth file")
    _expect("output", output, _PATH, "a folder to write the SavedModel into")
    _expect("net", net, str, "a network", ("1", "2", "ensemble"))
    _expect("overwrite", overwrite, bool, "True or False")
    return export.export(cfg, os.fspath(checkpoint), os.fspath(output), net=net, overwrite=overwrite)


def image_bytes(image) -> bytes:
    """The encoded bytes of one image given as the API takes it: encoded bytes (JPEG or PNG) as they are; a
    file path, read; a numpy array of uint8 pixels (H x W x 3 RGB, H x W or H x W x 1 grey, H x W x 4 RGBA:
    alpha dropped) or a PIL image, encoded as PNG (lossless: the model sees these pixels exactly).
    TypeError or ValueError in one line for anything else; bytes that the decoder training uses cannot
    read are a ValueError.

    Example:
        >>> import numpy as np
        >>> image_bytes(np.zeros((4, 6, 3), np.uint8))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
        >>> image_bytes(np.zeros((4, 6, 3), np.float32))
        Traceback (most recent call last):
        ValueError: image: expected uint8 pixels (0-255), got a float32 array; for floats in [0, 1]: (x * 255).round().astype(np.uint8)
    """
    import numpy as np

    from posedual_tf.data import records

    what = f"{type(image).__module__}.{type(image).__name__}"
    if isinstance(image, _PATH):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise ValueError(f"image: no file at {path}")
        with open(path, "rb") as f:
            data = f.read()
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        if type(image).__module__.startswith("PIL.") and hasattr(image, "convert"):
            image = np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB"))
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image: expected a numpy array of uint8 pixels, a PIL image, a file path or the encoded "
                            f"bytes of a JPEG or PNG file, got {what}")
        return _png(image)
    if records.decoded_size(data) is None:
        raise ValueError("image: undecodable (truncated or damaged: TensorFlow's image decoder cannot read it)")
    return data


def _png(pixels) -> bytes:
    """PNG bytes of a uint8 RGB, grey or RGBA array (alpha dropped), checked first."""
    import cv2
    import numpy as np

    if pixels.dtype != np.uint8:
        hint = "; for floats in [0, 1]: (x * 255).round().astype(np.uint8)" if pixels.dtype.kind == "f" else ""
        raise ValueError(f"image: expected uint8 pixels (0-255), got a {pixels.dtype} array{hint}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or pixels.ndim == 3 and pixels.shape[2] in (3, 4)) or min(pixels.shape[:2]) < 1:
        raise ValueError(f"image: expected H x W x 3 (RGB), H x W (grey) or H x W x 4 (RGBA) pixels, got shape "
                         f"{tuple(pixels.shape)}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels[..., 2::-1]))     # RGB(A) -> BGR, alpha dropped
    if not ok:
        raise ValueError(f"image: OpenCV could not encode the {tuple(pixels.shape)} pixels as PNG")
    return encoded.tobytes()


def predict_image(saved_model, image, boxes) -> dict:
    """Keypoints of the people in ``boxes`` (``[[x, y, w, h], ...]`` in pixels) of one image, by a SavedModel
    folder (or one already loaded with ``tf.saved_model.load``): ``keypoints`` ``[N, 17, 3]`` COCO-17
    (x, y, score) in image pixels, ``scores`` ``[N]`` and ``valid`` ``[N]`` (a box outside the image or without
    area gets no keypoints), as numpy arrays.

    ``image``: a numpy array of uint8 pixels (H x W x 3 RGB, H x W grey, H x W x 4 RGBA: the alpha is dropped), a
    PIL image, a file path, or the encoded bytes of a JPEG or PNG file (:func:`image_bytes`). TypeError and
    ValueError (one line) for anything else, before any TensorFlow call.

    Example (pixels from OpenCV, which reads BGR):
        >>> import cv2, posedual_tf
        >>> rgb = cv2.imread("photo.jpg")[..., ::-1]                        # doctest: +SKIP
        >>> posedual_tf.predict_image("runs/demo_dual/saved_model", rgb, [[10, 20, 80, 160]])  # doctest: +SKIP
    """
    import numpy as np
    import tensorflow as tf

    if not isinstance(saved_model, _PATH) and not hasattr(saved_model, "signatures"):
        raise TypeError(f"saved_model: expected a SavedModel folder or a loaded SavedModel, got "
                        f"{type(saved_model).__name__}")
    try:
        box_array = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"boxes: expected [[x, y, w, h], ...] numbers, got {type(boxes).__name__}") from None
    if box_array.size == 0 or box_array.ndim == 1 and box_array.size == 4:
        box_array = box_array.reshape(-1, 4)
    if box_array.ndim != 2 or box_array.shape[1] != 4 or not np.isfinite(box_array).all():
        raise ValueError(f"boxes: expected [[x, y, w, h], ...] (N x 4 finite numbers), got shape "
                         f"{tuple(box_array.shape)}" + ("" if np.isfinite(box_array).all() else " with non-finite values"))
    image = image_bytes(image)
    model = tf.saved_model.load(os.fspath(saved_model)) if isinstance(saved_model, _PATH) else saved_model
    out = model.signatures["predict_image"](image_bytes=tf.constant(image),
                                            boxes=tf.constant(box_array.astype(np.float32)))
    return {k: v.numpy() for k, v in out.items()}
