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
    train.mixed_precision=auto: ...
    model.pretrained: none: net1, net2 start from random weights
    ...
    >>> result["final_step"], sorted(result["metrics"])
    (2, ['_counts', 'ensemble', 'net1', 'net2'])
    >>> metrics = posedual_tf.evaluate_checkpoint(cfg, os.path.join(workdir, "final"))
    >>> 0.0 <= metrics["ensemble"]["AP"] <= 1.0
    True
    >>> saved = posedual_tf.export_saved_model(cfg, os.path.join(workdir, "final"), os.path.join(workdir, "model"))
    SavedModel: .../model
      net ...: the better network at the last validation (net1 ..., net2 ...)
    ...
    >>> poses = posedual_tf.predict(saved, posedual_tf.samples.IMAGE, posedual_tf.samples.BOXES)
    >>> poses, poses.people[0].keypoints.shape                      # COCO-17 (x, y, score) per person
    (ImagePoses(1 person, 640x425, people from boxes), (17, 3))
    >>> posedual_tf.predict_image(saved, posedual_tf.samples.IMAGE, posedual_tf.samples.BOXES)["keypoints"].shape
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
        >>> from posedual_tf.api import load_config
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


def export_saved_model(cfg: Config, checkpoint: str, output: str, net: str = "best", overwrite: bool = False) -> str:
    """Write network ``net`` of ``checkpoint`` as a SavedModel with the ``serving_default`` (crops),
    ``predict_image`` (encoded image + boxes) and ``predict_images`` (a batch, for TF Serving) signatures;
    prints and returns its folder. ``net``: ``best`` (the better network at the run's last validation:
    :mod:`posedual_tf.best_net`), ``1``, ``2`` or ``ensemble``."""
    from posedual_tf import export

    _expect_config(cfg)
    _expect("checkpoint", checkpoint, _PATH, "a weights folder, a training workdir or a .pth file")
    _expect("output", output, _PATH, "a folder to write the SavedModel into")
    _expect("net", net, str, "a network", ("best", "1", "2", "ensemble"))
    _expect("overwrite", overwrite, bool, "True or False")
    return export.export(cfg, os.fspath(checkpoint), os.fspath(output), net=net, overwrite=overwrite)


def export_tflite(cfg: Config, checkpoint: str, output: str, net: str = "best", precision: str = "float32") -> str:
    """Write network ``net`` (as :func:`export_saved_model`) of ``checkpoint`` as a ``.tflite`` file in the
    folder ``output`` (``float32``, ``float16``; int8 needs calibration records: the command line's
    ``--calibration``); prints and returns its path. Contract: :mod:`posedual_tf.tflite`."""
    from posedual_tf import tflite

    _expect_config(cfg)
    _expect("checkpoint", checkpoint, _PATH, "a weights folder, a training workdir or a .pth file")
    _expect("output", output, _PATH, "a folder to write the .tflite file into")
    _expect("net", net, str, "a network", ("best", "1", "2", "ensemble"))
    _expect("precision", precision, str, "a precision", ("float32", "float16"))
    return tflite.export_tflite(cfg, os.fspath(checkpoint), os.fspath(output), net=net, precision=precision)


def image_bytes(image) -> bytes:
    """The encoded bytes of one image given as the API takes it: encoded bytes (JPEG or PNG) as they are; a
    file path, read; a numpy array of uint8 pixels (H x W x 3 RGB, H x W or H x W x 1 grey, H x W x 4 RGBA:
    alpha dropped) or a PIL image, encoded as PNG (lossless: the model sees these pixels exactly).
    TypeError or ValueError in one line for anything else; bytes that the decoder training uses cannot
    read are a ValueError.

    Example:
        >>> import numpy as np
        >>> from posedual_tf.api import image_bytes
        >>> image_bytes(np.zeros((4, 6, 3), np.uint8))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
        >>> image_bytes(np.zeros((4, 6, 3), np.float32))
        Traceback (most recent call last):
        posedual_tf.inference.PredictError: image: expected uint8 pixels (0-255), got a float32 array; for floats in [0, 1]: (x * 255).round().astype(np.uint8)
    """
    from posedual_tf import inference

    return inference.load_image(image).data


def predict(model, images, boxes=None, detector=None, *, cfg: Config | None = None, net: str = "best"):
    """Keypoints of the people in one image or a list of images, by any model kind: a training workdir, Keras
    networks (with ``cfg``), a SavedModel or a ``.tflite`` file; images as numpy uint8 arrays (RGB, grey,
    RGBA), PIL images, file paths or encoded bytes; people from ``boxes`` (``[[x, y, w, h], ...]`` per image)
    or ``detector`` (``"hog"``: the default, weak; ``"whole"``; an Object Detection API SavedModel; a function
    ``rgb -> boxes``). Returns :class:`~posedual_tf.inference.ImagePoses` (one, or a list for a list):
    ``people`` (``keypoints [17, 3]`` x, y, score; ``box``; ``score``), ``to_coco()``, ``draw(image)``.
    Details: :mod:`posedual_tf.inference`.

    Example (the sample photo shipped with the package, its person's box):
        >>> import posedual_tf
        >>> from posedual_tf import samples
        >>> poses = posedual_tf.predict(samples.tflite_model(), samples.IMAGE, samples.boxes())   # doctest: +SKIP
    """
    from posedual_tf import inference

    _expect("net", net, str, "a network", ("best", "1", "2", "ensemble"))
    if cfg is not None:
        _expect_config(cfg)
    return inference.predict(model, images, boxes, detector, cfg=cfg, net=net)


def predict_image(saved_model, image, boxes) -> dict:
    """Keypoints of the people in ``boxes`` (``[[x, y, w, h], ...]`` in pixels) of one image, by a SavedModel
    folder (or one already loaded with ``tf.saved_model.load``): ``keypoints`` ``[N, 17, 3]`` COCO-17
    (x, y, score) in image pixels, ``scores`` ``[N]`` and ``valid`` ``[N]`` (a box outside the image or without
    area gets no keypoints), as numpy arrays. :func:`predict` does the same for every model kind and returns
    typed results.

    ``image``: a numpy array of uint8 pixels (H x W x 3 RGB, H x W grey, H x W x 4 RGBA: the alpha is dropped), a
    PIL image, a file path, or the encoded bytes of a JPEG or PNG file (:func:`image_bytes`). TypeError and
    ValueError (one line) for anything else, before any TensorFlow call.
    """
    from posedual_tf import inference

    if not isinstance(saved_model, _PATH) and not hasattr(saved_model, "signatures"):
        raise TypeError(f"saved_model: expected a SavedModel folder or a loaded SavedModel, got "
                        f"{type(saved_model).__name__}")
    box_array = inference.box_array(boxes)
    image = inference.load_image(image)
    run = inference.model_runner(saved_model)
    keypoints, scores, valid = run(image, box_array)
    return {"keypoints": keypoints, "scores": scores, "valid": valid}
