"""Record sources: a dataset's TFRecords opened (manifest read, shards indexed) and read person by person.

* :func:`open_source` opens one ``data.<role>`` set; :class:`Sources` opens each role of a run once, on
  first use, and hands the same :class:`Source` to training, the pair images and every validation.
* :func:`person_fetcher` reads any person of a source directly (union-24 joints) through the shard index
  (:mod:`record_index`); :func:`instances` serves them in file order, keeping the first ``max_instances``.

Example:
    >>> from posedual_tf.data.sources import Sources
    >>> from posedual_tf import config
    >>> sources = Sources(config.load("coco1k_dual").data)       # nothing is read yet
    >>> sources.has("unlabelled"), sources.has("unlabelled_eval")
    (True, False)
    >>> sources.labelled.num_instances     # doctest: +SKIP
    1000
    >>> # ^ opens data.labelled, once: it needs the converted records
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from posedual_tf import joints as joint_sets
from posedual_tf.config import DataConfig, DatasetConfig
from posedual_tf.data import record_index, records

AUTOTUNE = tf.data.AUTOTUNE

#: The roles a run reads, each a ``data.<role>`` entry of the config.
ROLES = ("labelled", "unlabelled", "val", "unlabelled_eval")

CONVERT_COMMANDS = {
    "coco": "python -m tfrecords_tools.coco --annotations person_keypoints_<split>.json --images <split> --output {prefix}",
    "custom": "python -m tfrecords_tools.coco --annotations <your_keypoints>.json --images <images> --output {prefix}",
    "synthetic": "posedual_tf.demo.prepare_data(cfg) (python -m posedual_tf.train --config demo_... runs it first)",
    "coco_wild": "python -m tfrecords_tools.detections --image-info image_info_unlabeled2017.json "
                 "--detections COCO_unlabeled2017_detections_person_faster_rcnn.json --images unlabeled2017 --output {prefix}",
    "coco_det": "python -m tfrecords_tools.detections --image-info image_info_val2017.json "
                "--detections COCO_val2017_detections_AP_H_56_person.json --images val2017 --output {prefix}",
    "aic": "python -m tfrecords_tools.aic --annotations keypoint_<split>_annotations.json --images <images> --output {prefix}",
    "mpii": "python -m tfrecords_tools.mpii --annotations annot/<split>.json --images images --output {prefix}",
}


class MissingRecordsError(FileNotFoundError):
    """The records a config names do not exist; the message says how to make them."""


@dataclasses.dataclass
class Source:
    prefix: str
    joint_set: joint_sets.JointSet
    #: people used (after ``max_instances``), in file order
    num_instances: int
    max_instances: int
    manifest: dict
    index: record_index.RecordIndex


def no_records_line(ds_cfg: DatasetConfig, role: str) -> str:
    """The one line for ``data.<role>`` whose records are not converted: the converter command that makes them."""
    cmd = CONVERT_COMMANDS.get(ds_cfg.source, CONVERT_COMMANDS["coco"]).format(prefix=ds_cfg.records)
    return f"data.{role}.records: no TFRecords at {ds_cfg.records}; create them with: {cmd}"


def open_source(ds_cfg: DatasetConfig, role: str) -> Source:
    """Read a dataset's manifest and index its shards; a missing one is a one-line error with the
    converter command."""
    prefix = ds_cfg.records
    if not prefix:
        raise MissingRecordsError(f"data.{role}.records: empty; set it to a TFRecord prefix")
    try:
        manifest = records.read_manifest(prefix)
    except FileNotFoundError:
        raise MissingRecordsError(no_records_line(ds_cfg, role)) from None
    try:
        index = record_index.load(prefix, manifest)
    except record_index.ShardMismatchError as e:
        raise MissingRecordsError(f"data.{role}.records: {e}") from None
    jset = joint_sets.from_manifest(manifest)
    n = index.num_people
    if ds_cfg.max_instances:
        n = min(n, ds_cfg.max_instances)
    if n == 0:
        raise MissingRecordsError(f"data.{role}.records: {prefix} holds no people (see {records.manifest_path(prefix)})")
    return Source(prefix, jset, n, ds_cfg.max_instances, manifest, index)


def person_fetcher(source: Source):
    """``person number (file order) -> person element``: reads the person's image record directly.

    Element keys: ``encoded``, ``image_id``, ``size`` (``[height, width]``: the converters store the
    image header's, so it needs no header parse), ``box [4]``, ``raw_box [4]``, ``score``, ``ann_id``,
    ``person`` (the number itself), ``joints [24, 2]``, ``vis [24]``, ``has_keypoints``.
    """
    jset = source.joint_set
    from_union = np.array(jset.from_union)
    gather_idx = tf.constant(np.maximum(from_union, 0), tf.int32)
    covered = tf.constant((from_union >= 0).astype(np.float32))
    det_vis = tf.constant(jset.union_mask())
    read = record_index.record_reader(source.index)
    person_record = tf.constant(source.index.person_record)
    person_slot = tf.constant(source.index.person_slot)

    def fetch(person):
        person = tf.cast(person, tf.int32)
        r = records.decode_example(read(tf.gather(person_record, person)), jset.num_joints)
        k = tf.gather(person_slot, person)
        kp = tf.gather(r["keypoints"][k], gather_idx, axis=0) * covered[:, None]      # [24, 3]
        has = r["has_keypoints"][k] > 0
        return {"encoded": r["image/encoded"], "image_id": r["image/id"], "box": r["boxes"][k],
                "size": tf.cast(tf.stack([r["image/height"], r["image/width"]]), tf.int32),
                "raw_box": r["raw_boxes"][k], "score": r["scores"][k], "ann_id": r["ann_ids"][k],
                "person": tf.cast(person, tf.int64), "joints": kp[:, :2],
                "vis": tf.where(has, kp[:, 2], det_vis), "has_keypoints": tf.cast(has, tf.int32)}

    return fetch


def instances(source: Source) -> tf.data.Dataset:
    """Per-person elements in file order (the first ``max_instances`` only); see :func:`person_fetcher`."""
    return tf.data.Dataset.range(source.num_instances).map(person_fetcher(source), num_parallel_calls=AUTOTUNE,
                                                           deterministic=True)


class Sources:
    """The record sources of one run, each role opened once, on first use, and then shared.

    ``sources.labelled`` (or ``sources["labelled"]``) opens ``data.labelled``; a role whose ``records`` is
    empty is a :class:`MissingRecordsError` when asked for (:meth:`has` tells first).
    """

    def __init__(self, data: DataConfig):
        self._data = data
        self._open: dict[str, Source] = {}

    def has(self, role: str) -> bool:
        """Whether ``data.<role>.records`` is set."""
        return bool(getattr(self._data, role).records)

    def __getitem__(self, role: str) -> Source:
        if role not in ROLES:
            raise KeyError(f"no source role {role!r}; expected one of {', '.join(ROLES)}")
        if role not in self._open:
            self._open[role] = open_source(getattr(self._data, role), role)
        return self._open[role]

    def __getattr__(self, role: str) -> Source:
        if role.startswith("_") or role not in ROLES:
            raise AttributeError(role)
        return self[role]
