"""Random access to the people of a TFRecord dataset: the index behind the global shuffle.

A converted dataset stores one record per image. To shuffle *people* uniformly (the reference
draws a full permutation of its person list every epoch), the pipeline needs to fetch any
person's record directly. :func:`load` scans the shards' record headers (12 bytes each, no
payload read) for byte offsets and takes the number of people per record from the manifest;
:func:`record_reader` then reads one record in graph ops (TensorFlow's TFRecord reader started at the
record's byte offset, both CRCs checked), so a damaged byte range is a dropped and counted record,
never a silently different image. :class:`RecordReader` is the same read in Python (``os.pread`` and
the native google-crc32c library, ~8 us for a 200 kB record) for the command-line tools.

People are numbered in file order (shard, record, person within the record), the order the
reference builds its person list in, so "the first N people" is ``range(N)``.

Example (converted COCO records, as the README's converter commands write them):
    >>> import tensorflow as tf                                                   # doctest: +SKIP
    >>> from posedual_tf.data import record_index                                 # doctest: +SKIP
    >>> index = record_index.load("data/coco/train2017")                           # doctest: +SKIP
    >>> index.num_people, index.person_record[:3]                                  # doctest: +SKIP
    (149813, array([0, 0, 1], dtype=int32))
    >>> serialized = record_index.read_record(index, tf.constant(0, tf.int32))    # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
import struct
import sys

import google_crc32c
import numpy as np
import tensorflow as tf

from posedual_tf.data import records

#: TFRecord framing: uint64 length, uint32 masked CRC of the length, payload, uint32 CRC.
HEADER_BYTES = 12
FOOTER_BYTES = 4


def masked_crc(data: bytes) -> int:
    """TFRecord's checksum of ``data``: CRC-32C, rotated right by 15 bits, plus 0xa282ead8."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class CorruptRecordError(OSError):
    """A record whose bytes do not match its CRC (a damaged byte range in a shard)."""


class ShardMismatchError(ValueError):
    """Shards that do not agree with their manifest (truncated, replaced, missing)."""


@dataclasses.dataclass
class RecordIndex:
    prefix: str
    paths: list[str]
    #: per record: shard number, payload byte offset and length
    record_shard: np.ndarray
    record_offset: np.ndarray
    record_length: np.ndarray
    #: per person (file order): its record and its position among the record's people
    person_record: np.ndarray
    person_slot: np.ndarray

    @property
    def num_people(self) -> int:
        return int(self.person_record.shape[0])


def scan_shard(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Payload offsets and lengths of every record in one shard, from the headers alone."""
    offsets, lengths = [], []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            head = os.pread(f.fileno(), HEADER_BYTES, pos)
            if len(head) < HEADER_BYTES:
                break
            n, crc = struct.unpack("<QI", head)
            if masked_crc(head[:8]) != crc:       # a damaged length would misplace every later record
                raise ShardMismatchError(f"{path}: the record header at byte {pos} fails its CRC (the shard is "
                                         "damaged); re-run the converter")
            offsets.append(pos + HEADER_BYTES)
            lengths.append(n)
            pos += HEADER_BYTES + n + FOOTER_BYTES
    if pos != size:
        raise ShardMismatchError(f"{path}: truncated TFRecord shard (a record runs past the end of the file at byte {size})")
    return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)


def _count_people(path: str, num_records: int) -> np.ndarray:
    """People per record of a shard converted before manifests listed them (reads the shard once)."""
    counts = []
    for rec in tf.data.TFRecordDataset(path):
        ex = tf.train.Example.FromString(rec.numpy())
        counts.append(len(ex.features.feature["person/score"].float_list.value))
    return np.asarray(counts[:num_records], np.int64)


def load(prefix: str, manifest: dict | None = None) -> RecordIndex:
    """Index the shards listed by ``PREFIX.json``; shards that disagree with it are an error."""
    manifest = manifest or records.read_manifest(prefix)
    folder = os.path.dirname(os.path.abspath(prefix))       # absolute: tf.data service workers read them too
    paths, shard_ids, offsets, lengths, people = [], [], [], [], []
    for i, shard in enumerate(manifest["shards"]):
        path = os.path.join(folder, shard["file"])
        if not os.path.exists(path):
            raise ShardMismatchError(f"{records.manifest_path(prefix)}: lists {shard['file']}, which is missing")
        off, length = scan_shard(path)
        if len(off) != shard["records"]:
            raise ShardMismatchError(f"{path}: {len(off)} records, the manifest says {shard['records']}; "
                              "re-run the converter")
        counts = shard.get("record_people")
        if counts is None:
            print(f"{path}: the manifest has no per-record people counts (converted by an older version); "
                  "counting them by reading the shard once. Re-run the converter to store them.", file=sys.stderr)
            counts = _count_people(path, len(off))
        counts = np.asarray(counts, np.int64)
        if len(counts) != len(off) or int(counts.sum()) != shard["instances"]:
            raise ShardMismatchError(f"{path}: per-record people counts disagree with the manifest; re-run the converter")
        paths.append(path)
        shard_ids.append(np.full(len(off), i, np.int32))
        offsets.append(off)
        lengths.append(length)
        people.append(counts)
    counts = np.concatenate(people) if people else np.zeros([0], np.int64)
    person_record = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros([0], np.int64)
    person_slot = (np.arange(len(person_record)) - np.repeat(starts, counts)).astype(np.int32)
    return RecordIndex(prefix, paths,
                       np.concatenate(shard_ids) if shard_ids else np.zeros([0], np.int32),
                       np.concatenate(offsets) if offsets else np.zeros([0], np.int64),
                       np.concatenate(lengths) if lengths else np.zeros([0], np.int64),
                       person_record, person_slot)


class RecordReader:
    """``pread`` of one record; file descriptors opened once per process and shard."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.fds: dict[int, int] = {}

    def __call__(self, shard, offset, length) -> bytes:
        shard = int(shard)
        fd = self.fds.get(shard)
        if fd is None:
            fd = self.fds.setdefault(shard, os.open(self.paths[shard], os.O_RDONLY))
        data = os.pread(fd, int(length) + FOOTER_BYTES, int(offset))
        if len(data) != int(length) + FOOTER_BYTES:
            raise IOError(f"{self.paths[shard]}: short read at byte {int(offset)}")
        payload, (crc,) = data[:-FOOTER_BYTES], struct.unpack("<I", data[-FOOTER_BYTES:])
        if masked_crc(payload) != crc:
            raise CorruptRecordError(f"{self.paths[shard]}: the record at byte {int(offset)} fails its CRC")
        return payload


def record_reader(index: RecordIndex):
    """``record_number (int32 scalar) -> serialized record (string scalar)``, usable in tf.data maps.

    Graph ops only (no Python per record, so the pipeline also runs inside tf.data service
    workers): TensorFlow's TFRecord reader starts at the record's header (``byte_offsets``), reads
    that one record and checks both of its CRCs; a damaged record raises ``DataLossError``, which the
    pipeline drops and counts.
    """
    paths = tf.constant(index.paths if index.paths else [""])
    shard = tf.constant(index.record_shard)
    start = tf.constant(index.record_offset - HEADER_BYTES)
    buffer = tf.constant(index.record_length + HEADER_BYTES + FOOTER_BYTES)
    spec = tf.TensorSpec([], tf.string)

    def read(record):
        variant = tf.raw_ops.TFRecordDatasetV2(
            filenames=tf.reshape(tf.gather(paths, tf.gather(shard, record)), [1]), compression_type="",
            buffer_size=tf.gather(buffer, record), byte_offsets=tf.reshape(tf.gather(start, record), [1]))
        return tf.data.experimental.from_variant(variant, spec).take(1).get_single_element()

    return read


def read_record(index: RecordIndex, record) -> tf.Tensor:
    """One record's serialized bytes (eager convenience around :func:`record_reader`)."""
    return record_reader(index)(record)
