"""The TFRecord schema: one ``tf.train.Example`` per image, people as parallel lists.

Both the writers (:mod:`posedual_tf.conversion`) and the tf.data decoder use this module, so the
schema lives here only.

Features of one image record (N people, K joints of the file's joint set):

===========================  =======  =====================================================
key                          type     meaning
===========================  =======  =====================================================
``image/encoded``            bytes    the source file's bytes, unchanged (JPEG or PNG)
``image/id``                 int64    COCO image id (or a stable integer for other sources)
``image/filename``           bytes    file name relative to the images folder
``image/height``/``width``   int64    image size from the annotation (or the decoder)
``person/box``               float    N*4 ``x, y, w, h`` used for the crop (COCO: cleaned)
``person/raw_box``           float    N*4 original box, for the results json
``person/score``             float    N box scores (1 for ground truth)
``person/id``                int64    N annotation ids (-1 when the source has none)
``person/has_keypoints``     int64    N, 1 for annotated people, 0 for detections
``person/keypoints``         float    N*K*3 ``x, y, vis`` in the joint set's order, vis in {0, 1}
===========================  =======  =====================================================

The shard files are ``PREFIX-00000-of-000NN.tfrecord``; ``PREFIX.json`` is the manifest
(:func:`read_manifest`): joint set, counts, sources with sha256 and every skipped item.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Sequence

import numpy as np

from posedual_tf import files

SHARD_PATTERN = "{prefix}-{index:05d}-of-{total:05d}.tfrecord"
SCHEMA_VERSION = 1


@dataclasses.dataclass
class Person:
    box: Sequence[float]                  # x, y, w, h used for the crop
    raw_box: Sequence[float]
    score: float = 1.0
    ann_id: int = -1
    keypoints: np.ndarray | None = None   # [K, 3] x, y, vis; None for detections


@dataclasses.dataclass
class ImageEntry:
    path: str                             # absolute or relative path to read the bytes from
    filename: str                         # name stored in the record
    image_id: int
    height: int
    width: int
    persons: list[Person]


def shard_paths(prefix: str, total: int) -> list[str]:
    return [SHARD_PATTERN.format(prefix=prefix, index=i, total=total) for i in range(total)]


def existing_shards(prefix: str) -> list[str]:
    """Shard files of ``prefix`` in order; raises FileNotFoundError with a clear message."""
    paths = sorted(glob.glob(f"{glob.escape(prefix)}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].tfrecord"))
    if not paths:
        raise FileNotFoundError(f"{prefix}: no TFRecord shards ({prefix}-*-of-*.tfrecord)")
    return paths


def manifest_path(prefix: str) -> str:
    return prefix + ".json"


def read_manifest(prefix: str) -> dict[str, Any]:
    path = manifest_path(prefix)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: manifest missing; convert the dataset with tfrecords_tools")
    manifest = files.read_json(path, "a dataset manifest written by tfrecords_tools")
    if not isinstance(manifest, dict):
        raise files.BadFileError(f"{path}: holds a JSON {type(manifest).__name__}, not a dataset manifest written by "
                                 "tfrecords_tools")
    for key in ("joint_set", "num_joints", "num_images", "num_instances", "shards"):
        if key not in manifest:
            raise ValueError(f"{path}: field '{key}' missing from the manifest")
    return manifest


def encode_example(entry: ImageEntry, image_bytes: bytes, num_joints: int):
    """Serialise one image and its people as a ``tf.train.Example``."""
    import tensorflow as tf

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(v, np.float32).ravel()))

    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(v, np.int64).ravel()))

    def bytes_(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    kps = []
    for p in entry.persons:
        k = p.keypoints if p.keypoints is not None else np.zeros([num_joints, 3], np.float32)
        if k.shape != (num_joints, 3):
            raise ValueError(f"{entry.filename}: keypoints shape {k.shape}, expected ({num_joints}, 3)")
        kps.append(k)
    n = len(entry.persons)
    ext = os.path.splitext(entry.filename)[1].lower()
    feature = {
        "image/encoded": bytes_(image_bytes),
        "image/id": ints([entry.image_id]),
        "image/filename": bytes_(entry.filename.encode()),
        "image/format": bytes_(b"png" if ext == ".png" else b"jpeg"),
        "image/height": ints([entry.height]),
        "image/width": ints([entry.width]),
        "person/box": floats([p.box for p in entry.persons] if n else []),
        "person/raw_box": floats([p.raw_box for p in entry.persons] if n else []),
        "person/score": floats([p.score for p in entry.persons]),
        "person/id": ints([p.ann_id for p in entry.persons]),
        "person/has_keypoints": ints([p.keypoints is not None for p in entry.persons]),
        "person/keypoints": floats(kps if n else []),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def feature_spec():
    import tensorflow as tf

    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/id": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "person/box": tf.io.VarLenFeature(tf.float32),
        "person/raw_box": tf.io.VarLenFeature(tf.float32),
        "person/score": tf.io.VarLenFeature(tf.float32),
        "person/id": tf.io.VarLenFeature(tf.int64),
        "person/has_keypoints": tf.io.VarLenFeature(tf.int64),
        "person/keypoints": tf.io.VarLenFeature(tf.float32),
    }


def decode_example(serialized, num_joints: int) -> dict[str, Any]:
    """Parse a serialised record into dense tensors (in-graph).

    Returns a dict with ``image/encoded`` (scalar string), ``image/id``, ``image/filename``,
    ``image/height``, ``image/width``, ``boxes [N, 4]``, ``raw_boxes [N, 4]``, ``scores [N]``,
    ``ann_ids [N]``, ``has_keypoints [N]`` and ``keypoints [N, K, 3]``.
    """
    import tensorflow as tf

    f = tf.io.parse_single_example(serialized, feature_spec())
    dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in f.items()}
    return {
        "image/encoded": dense["image/encoded"],
        "image/id": dense["image/id"],
        "image/filename": dense["image/filename"],
        "image/height": dense["image/height"],
        "image/width": dense["image/width"],
        "boxes": tf.reshape(dense["person/box"], [-1, 4]),
        "raw_boxes": tf.reshape(dense["person/raw_box"], [-1, 4]),
        "scores": dense["person/score"],
        "ann_ids": dense["person/id"],
        "has_keypoints": dense["person/has_keypoints"],
        "keypoints": tf.reshape(dense["person/keypoints"], [-1, num_joints, 3]),
    }


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of JPEG bytes; 1 when there is none.

    The orientation rule: training, evaluation and the converters read the stored pixels and ignore
    it, as the reference does (OpenCV with ``IMREAD_IGNORE_ORIENTATION``; COCO's keypoints are in the
    stored pixels' frame); ``predict`` applies it, so a phone photo is seen upright, as its owner sees it.
    """
    import struct

    if data[:2] != b"\xff\xd8":
        return 1
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xDA:                         # start of scan: no metadata after it
            break
        body = data[i + 4:i + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            tiff = body[6:]
            order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
            if order is None or len(tiff) < 8:
                return 1
            ifd = struct.unpack(order + "I", tiff[4:8])[0]
            if ifd + 2 > len(tiff):
                return 1
            count = struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]
            for k in range(count):
                entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
                if len(entry) == 12 and struct.unpack(order + "H", entry[:2])[0] == 0x0112:
                    value = struct.unpack(order + "H", entry[8:10])[0]
                    return value if 1 <= value <= 8 else 1
            return 1
        i += 2 + length
    return 1


def decode_image(encoded):
    """Encoded JPEG/PNG bytes -> uint8 ``[H, W, 3]`` RGB (in-graph), the stored pixels (EXIF orientation
    ignored, as the reference reads: see :func:`exif_orientation`).

    JPEGs use the accurate integer IDCT, as OpenCV (the reference's reader) does; corrupt bytes
    raise InvalidArgumentError.
    """
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))


def decoded_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of encoded bytes as :func:`decode_image` (the decoder training crops with) reads
    them, or None when it cannot read the whole image (truncated or damaged). Decodability is decided by
    decoding, never by markers: bytes after a JPEG's end-of-image marker or a PNG's IEND chunk, which many
    cameras and phones append, are fine. The decoder's own line for a damaged image is dropped: callers give
    the reason in their words."""
    import tensorflow as tf

    try:
        with files.stderr_to_devnull():
            shape = decode_image(tf.constant(data)).shape
    except tf.errors.InvalidArgumentError:
        return None
    return int(shape[0]), int(shape[1])


def image_size(encoded):
    """``[height, width]`` int32 of encoded bytes; JPEG from its header, without decoding."""
    import tensorflow as tf

    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.io.extract_jpeg_shape(encoded)[:2],
                   lambda: tf.shape(decode_image(encoded))[:2])


def decode_window(encoded, window):
    """Decode only ``window = [y, x, h, w]`` (int32) of the image, RGB uint8 (JPEG: partial decode)."""
    import tensorflow as tf

    def jpeg():
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3, dct_method="INTEGER_ACCURATE")

    def other():
        img = decode_image(encoded)
        return img[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def read_all(prefix: str) -> list[dict[str, Any]]:
    """Eagerly read every record of ``prefix`` as numpy dicts (tests, inspect)."""
    import tensorflow as tf

    manifest = read_manifest(prefix)
    out = []
    for rec in tf.data.TFRecordDataset(existing_shards(prefix)):
        d = decode_example(rec, manifest["num_joints"])
        out.append({k: v.numpy() for k, v in d.items()})
    return out
