"""Training batches made by tf.data service workers, in the local pipeline's order.

:func:`pipeline.step_batches` makes each step's batch from the step number alone, in graph ops, so the
dispatcher can hand step numbers to any worker (dynamic sharding: a worker that joins or restarts
takes the next steps). The workers' batches arrive in the order they finish; :func:`served` puts them
back in step order, reports the people they dropped to the run's corruption counter and yields the
batches the local pipeline makes for the same seed and start step.

Start the service with ``python -m posedual_tf.data_service`` (docs/data_service.md) or TensorFlow's
own ``tf.data.experimental.service.DispatchServer`` / ``WorkerServer``.

Example (a dispatcher and a worker in this process; any address works the same):
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

import socket

import tensorflow as tf

from posedual_tf.data import corrupt


class ServiceUnreachableError(ConnectionError):
    """No tf.data service dispatcher answers at the configured address."""


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A TCP connection to the dispatcher at ``address`` (``[grpc://]HOST:PORT``), or one line saying how
    to start one."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise ServiceUnreachableError(
            f"train.data_service: no tf.data service dispatcher at {hostport} ({e.__class__.__name__}: {e}); start "
            f"one with: python -m posedual_tf.data_service dispatcher --port {port or 'PORT'}") from None


def served(steps: tf.data.Dataset, address: str, start_step: int,
           counter: corrupt.CorruptionCounter | None = None) -> tf.data.Dataset:
    """The batches of ``steps`` (``(step, dropped, batch)`` from ``start_step`` on, as
    :func:`pipeline.step_batches` makes them) made by the service at ``address`` (``HOST:PORT`` of its
    dispatcher), in step order. No dispatcher listening there is a one-line error (the service's client
    would wait for one without end)."""
    check_reachable(address)
    remote = steps.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=address if "://" in address else f"grpc://{address}"))
    spec = steps.element_spec[2]

    def in_order():
        waiting, want = {}, int(start_step)
        for step, dropped, batch in remote:
            waiting[int(step)] = (dropped, batch)
            while want in waiting:
                dropped, batch = waiting.pop(want)
                if counter is not None:
                    for name, n in dropped.items():
                        if int(n):
                            counter.report_count(name, int(n))
                yield batch
                want += 1

    return tf.data.Dataset.from_generator(in_order, output_signature=spec).prefetch(2)
