"""Training batches made by tf.data service workers, in the local pipeline's order.

:func:`pipeline.step_batches` makes each step's batch from the step number alone, in graph ops, so the
dispatcher can hand step numbers to any worker (dynamic sharding: a worker that joins or restarts
takes the next steps). The workers' batches arrive in the order they finish; :func:`served` puts them
back in step order, reports the people they dropped to the run's corruption counter and yields the
batches the local pipeline makes for the same seed and start step.

Start the service with ``python -m posedual_tf.data_service`` (docs/data_service.md) or TensorFlow's
own ``tf.data.experimental.service.DispatchServer`` / ``WorkerServer``.

Example (a dispatcher and a worker in this process; any address works the same):
    >>> from posedual_tf.data.service import served
    >>> import tensorflow as tf
    >>> dispatcher = tf.data.experimental.service.DispatchServer()
    >>> address = dispatcher.target.split("://")[1]
    >>> worker = tf.data.experimental.service.WorkerServer(
    ...     tf.data.experimental.service.WorkerConfig(dispatcher_address=address))
    >>> steps = tf.data.Dataset.range(3).map(lambda s: (s, {"labelled": s * 0}, {"x": tf.fill([2], s)}))
    >>> [int(b["x"][0]) for b in served(steps, address, start_step=0).take(3)]
    [0, 1, 2]
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import tensorflow as tf

from posedual_tf import peers
from posedual_tf.data import corrupt


class ServiceUnreachableError(ConnectionError):
    """No tf.data service dispatcher answers at the configured address."""


def check_reachable(address: str, timeout_s: float = 10.0, setting: str = "train.data_service") -> None:
    """A TCP connection to the dispatcher at ``address`` (``[grpc://]HOST:PORT``), or one line naming
    ``setting`` and saying how to start one."""
    hostport = address.split("://", 1)[-1]
    port = hostport.rpartition(":")[2]
    e = peers.connect_error(address, timeout_s)
    if e is not None:
        raise ServiceUnreachableError(
            f"{setting}: no tf.data service dispatcher at {hostport} ({e.__class__.__name__}: {e}); start "
            f"one with: python -m posedual_tf.data_service dispatcher --port {port or 'PORT'}") from None


def served(steps: tf.data.Dataset, address: str, start_step: int,
           counter: corrupt.CorruptionCounter | None = None, timeout_s: float = 1800.0) -> tf.data.Dataset:
    """The batches of ``steps`` (``(step, dropped, batch)`` from ``start_step`` on, as
    :func:`pipeline.step_batches` makes them) made by the service at ``address`` (``HOST:PORT`` of its
    dispatcher), in step order. No dispatcher listening there is a one-line error; a step that does not
    come within ``timeout_s`` (no worker, a worker lost while making it, the dispatcher gone: the
    service's client would wait without end) ends the stream with a :class:`peers.PeerTimeoutError`."""
    check_reachable(address)
    remote = steps.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=address if "://" in address else f"grpc://{address}"))
    spec = steps.element_spec[2]
    hostport = address.split("://", 1)[-1]

    def batches():
        for dropped, batch in in_order(remote, start_step, timeout_s, hostport):
            if counter is not None:
                for name, n in dropped.items():
                    if int(n):
                        counter.report_count(name, int(n))
            yield batch

    return tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(2)


#: Steps held back for one that has not come: more means it was lost (a stuck or stopped worker), and
#: holding them all would only fill the memory.
MAX_AHEAD = 128


def in_order(remote: Iterable, start_step: int, timeout_s: float, address: str,
             notice_s: float = peers.NOTICE_S) -> Iterator:
    """``(dropped, batch)`` of the ``(step, dropped, batch)`` elements of ``remote`` in step order from
    ``start_step``, read by a thread of their own so that every wait is bounded: after ``notice_s``
    without the next step a line says what the run waits for; after ``timeout_s``, or when ``remote``
    ends before it, or with :data:`MAX_AHEAD` later steps come instead, :class:`peers.PeerTimeoutError`
    names the step and the service."""
    arrived: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()
    end = object()

    def read():
        try:
            for element in remote:
                while not stop.is_set():
                    try:
                        arrived.put(element, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            arrived.put(end)
        except Exception as e:  # noqa: BLE001 - handed to the reader of the stream, which raises it
            arrived.put(e)

    threading.Thread(target=read, daemon=True, name="posedual-data-service").start()
    waiting, want = {}, int(start_step)
    try:
        while True:
            while want in waiting:
                yield waiting.pop(want)
                want += 1
            element = _next(arrived, want, waiting, timeout_s, notice_s, address)
            if element is end:
                if waiting:
                    raise peers.PeerTimeoutError(_lost(want, waiting, address))
                return
            if isinstance(element, Exception):
                raise element
            step, dropped, batch = element
            waiting[int(step)] = (dropped, batch)
            if len(waiting) > MAX_AHEAD:          # the wanted step is lost, not late: no wait without end
                raise peers.PeerTimeoutError(_lost(want, waiting, address))
    finally:
        stop.set()


def _next(arrived: queue.Queue, want: int, waiting: dict, timeout_s: float, notice_s: float, address: str):
    """The next element to arrive, waiting at most ``timeout_s`` (a line after ``notice_s``)."""
    try:
        return arrived.get(timeout=min(notice_s, timeout_s))
    except queue.Empty:
        if timeout_s <= notice_s:
            raise peers.PeerTimeoutError(_lost(want, waiting, address, timeout_s)) from None
    print(f"train.data_service: waiting for step {want} from the tf.data service at {address} (nothing for "
          f"{notice_s:g} s; are its workers running? giving up after {timeout_s:g} s: "
          f"train.peer_timeout_s)", flush=True)
    try:
        return arrived.get(timeout=timeout_s - notice_s)
    except queue.Empty:
        raise peers.PeerTimeoutError(_lost(want, waiting, address, timeout_s)) from None


def _lost(want: int, waiting: dict, address: str, timeout_s: float | None = None) -> str:
    """The line for a step that did not come: none came (no worker) or later ones did (one was lost)."""
    waited = (f"within {timeout_s:g} s (train.peer_timeout_s)" if timeout_s is not None else
              f"while {len(waiting)} later steps did")
    why = (f"steps up to {max(waiting)} came, so a worker stopped while making it" if waiting else
           f"no worker is running or the dispatcher stopped (start one: python -m posedual_tf.data_service worker "
           f"--dispatcher {address})")
    return (f"train.data_service: step {want} did not come from the tf.data service at {address} {waited}: {why}; "
            f"restart it: the run resumes from its last checkpoint")
