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


def predict_image(saved_model, image: bytes, boxes) -> dict:
    """Keypoints of the people in ``boxes`` (``[[x, y, w, h], ...]`` in pixels) of one encoded image (JPEG or
    PNG bytes), by a SavedModel folder (or one already loaded with ``tf.saved_model.load``): ``keypoints``
    ``[N, 17, 3]`` COCO-17 (x, y, score) in image pixels, ``scores`` ``[N]`` and ``valid`` ``[N]`` (a box outside the
    image or without area gets no keypoints), as numpy arrays. TypeError for an image that is not bytes,
    ValueError (one line) for bytes that TensorFlow's image decoder cannot read."""
    import numpy as np
    import tensorflow as tf

    from posedual_tf.data import records

    if not isinstance(saved_model, _PATH) and not hasattr(saved_model, "signatures"):
        raise TypeError(f"saved_model: expected a SavedModel folder or a loaded SavedModel, got "
                        f"{type(saved_model).__name__}")
    if not isinstance(image, (bytes, bytearray)):
        raise TypeError(f"image: expected the encoded bytes of a JPEG or PNG file (open(path, 'rb').read()), "
                        f"got {type(image).__module__}.{type(image).__name__}")
    try:
        box_array = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"boxes: expected [[x, y, w, h], ...] numbers, got {type(boxes).__name__}") from None
    if box_array.size == 0 or box_array.ndim == 1 and box_array.size == 4:
        box_array = box_array.reshape(-1, 4)
    if box_array.ndim != 2 or box_array.shape[1] != 4 or not np.isfinite(box_array).all():
        raise ValueError(f"boxes: expected [[x, y, w, h], ...] (N x 4 finite numbers), got shape "
                         f"{tuple(box_array.shape)}" + ("" if np.isfinite(box_array).all() else " with non-finite values"))
    if records.decoded_size(bytes(image)) is None:
        raise ValueError("image: undecodable (truncated or damaged: TensorFlow's image decoder cannot read it)")
    model = tf.saved_model.load(os.fspath(saved_model)) if isinstance(saved_model, _PATH) else saved_model
    out = model.signatures["predict_image"](image_bytes=tf.constant(bytes(image)),
                                            boxes=tf.constant(box_array.astype(np.float32)))
    return {k: v.numpy() for k, v in out.items()}
