"""Counting the records a stream drops because they fail to parse or decode: never silent.

tf.data can only drop an element whose map raised (``ignore_errors``); it cannot say which. Every
stream here numbers its elements (position in the epoch order) before the map, so after the drop
:func:`counted` sees the gaps in those numbers, and reports the people that went missing (and so
their shards) to a :class:`CorruptionCounter` on the host. A sentinel at the end of each epoch's
stream makes drops at the very end count too.

Example (in a pipeline: ``counted(ds.ignore_errors(), n, order, counter, "unlabelled", source.index)``):
    >>> from posedual_tf.data.corrupt import CorruptionCounter
    >>> counter = CorruptionCounter()
    >>> counter.total(), counter.summary()["by_stream"]
    (0, {})
"""
from __future__ import annotations

import collections
import functools
import threading

import numpy as np
import tensorflow as tf


class CorruptDataError(RuntimeError):
    """More records failed to parse or decode than ``data.max_corrupt_fraction`` allows."""


class CorruptionCounter:
    """People dropped per stream and per shard (thread-safe; tf.data calls it from its threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._streams: list[tuple[str, object]] = []
        self.by_stream: collections.Counter = collections.Counter()
        self.by_shard: collections.Counter = collections.Counter()

    def register(self, name: str, index) -> int:
        """A stream's id; ``index`` (a RecordIndex) maps its people to shard files."""
        with self._lock:
            self._streams.append((name, index))
            return len(self._streams) - 1

    def report(self, stream: int, people: np.ndarray) -> np.int64:
        name, index = self._streams[int(stream)]
        with self._lock:
            self.by_stream[name] += len(people)
            for p in np.asarray(people, np.int64):
                self.by_shard[index.paths[index.record_shard[index.person_record[p]]]] += 1
        return np.int64(len(people))

    def report_count(self, name: str, n: int) -> None:
        """``n`` people of stream ``name`` dropped where their shards are not known (tf.data service
        workers report counts only); they count in the totals and under ``by_stream``."""
        with self._lock:
            self.by_stream[name] += int(n)

    def total(self) -> int:
        with self._lock:
            return sum(self.by_stream.values())

    def worst_shard(self) -> str:
        with self._lock:
            return self.by_shard.most_common(1)[0][0] if self.by_shard else ""

    def summary(self) -> dict:
        with self._lock:
            return {"total": sum(self.by_stream.values()), "by_stream": dict(self.by_stream),
                    "by_shard": dict(self.by_shard)}

    def state(self) -> dict:
        """The counts, as a training checkpoint keeps them (:class:`posedual_tf.checkpoints.RunState`).
        People that tf.data read ahead of the checkpoint's step (its prefetch, a few batches) are in
        them, and a run resumed there reads and counts them again."""
        return self.summary()

    def load_state(self, state: dict) -> None:
        """Go on from a checkpoint's counts (a resumed run)."""
        with self._lock:
            self.by_stream = collections.Counter(state.get("by_stream", {}))
            self.by_shard = collections.Counter(state.get("by_shard", {}))


def _placeholder(spec):
    shape = [0 if d is None else d for d in spec.shape]     # a decoded window's size varies: empty here
    if spec.dtype == tf.string:
        return tf.fill(shape, "")
    return tf.zeros(shape, spec.dtype)


def _element(_, elem):
    return elem


def counted(ds: tf.data.Dataset, size, order, counter: CorruptionCounter | None, name: str, index,
            first=0) -> tf.data.Dataset:
    """``(position, element)`` pairs after ``ignore_errors`` -> elements, reporting the gaps.

    ``size``: the number of positions in this stream's epoch; ``order[pos]``: the person at ``pos``;
    ``first``: the first position the stream holds (a resumed epoch starts later).
    """
    if counter is None:
        return ds.map(_element)
    sid = counter.register(name, index)
    size = tf.cast(size, tf.int64)
    end = tf.data.Dataset.from_tensors((size, tf.nest.map_structure(_placeholder, ds.element_spec[1])))
    report = functools.partial(counter.report, sid)

    def step(last, item):
        pos, elem = item
        missing = lambda: tf.numpy_function(report, [tf.gather(order, tf.range(last + 1, pos))], tf.int64,  # noqa: E731
                                            stateful=True)
        n = tf.cond(pos - last > 1, missing, lambda: tf.constant(0, tf.int64))
        return pos, (pos + 0 * n, elem)          # the output depends on the report, so it always runs

    ds = ds.concatenate(end).scan(tf.cast(first, tf.int64) - 1, step)
    def before_end(pos, _):
        return pos < size

    return ds.filter(before_end).map(_element)
