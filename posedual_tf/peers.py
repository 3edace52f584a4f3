"""Waits on other processes, each bounded and explained (``train.peer_timeout_s``).

A training run waits on peers in two places: the tasks of a TF_CONFIG cluster (at start, and in every
collective of a step) and the workers of a tf.data service. TensorFlow waits on both without end: a
cluster task that never starts, or a service whose workers are gone, would leave the run waiting
silently. Every such wait here says what it waits for once it lasts (:data:`NOTICE_S`), and gives up
after its bound with one line (:class:`PeerTimeoutError`) naming the peer, the setting and what to do.

Example:
    >>> from posedual_tf.peers import describe_task
    >>> describe_task("/job:worker/replica:0/task:1", {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]})
    'worker 1 (10.0.0.2:2222)'
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys

#: Seconds a wait lasts before it says what it waits for (at most the bound itself).
NOTICE_S = 30.0


class PeerTimeoutError(TimeoutError):
    """A peer did not answer within ``train.peer_timeout_s``; the message is one line."""


def describe_task(task: str, cluster: dict) -> str:
    """``ROLE INDEX (HOST:PORT)`` for a TensorFlow task name (``/job:ROLE/replica:0/task:INDEX``)."""
    m = re.search(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", task)
    if not m:
        return task
    role, index = m.group(1), int(m.group(2))
    addresses = cluster.get(role) or []
    return f"{role} {index}" + (f" ({addresses[index]})" if index < len(addresses) else "")


def connect_error(address: str, timeout_s: float = 1.0) -> Exception | None:
    """Why no TCP connection opens to ``[grpc://]HOST:PORT`` (the OSError, or a ValueError for a bad
    port), or None when something listens there."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        return e
    return None


def unreachable(cluster: dict, own: tuple[str, int] | None, timeout_s: float = 1.0) -> str:
    """The cluster's tasks (but ``own``, ``(role, index)``) that accept no TCP connection, the ones not
    started, as ``ROLE INDEX (HOST:PORT), ...``; empty when every one answers."""
    return ", ".join(f"{role} {index} ({address})" for role, addresses in cluster.items()
                     for index, address in enumerate(addresses or [])
                     if (role, index) != own and connect_error(address, timeout_s) is not None)


@contextlib.contextmanager
def bounded(timeout_s: float, notice: str, give_up: str, cluster: dict | None = None,
            own: tuple[str, int] | None = None, notice_s: float = NOTICE_S):
    """Bound a wait that TensorFlow cannot interrupt (a call blocked in its C++ runtime, which holds
    Python's lock, so no thread of this process can act): a watcher process prints ``notice`` after
    ``notice_s`` and, after ``timeout_s``, writes ``error: give_up`` to stderr and kills this process
    (status 137; nothing else stops that call, and every file is written under a temporary name, so what
    exists is whole). ``{missing}`` in ``give_up`` becomes the tasks of ``cluster`` (but ``own``) that
    accept no connection at that moment. Leaving the block, or this process ending, ends the watcher."""
    spec = {"pid": os.getpid(), "timeout_s": timeout_s, "notice_s": notice_s, "notice": notice,
            "give_up": give_up, "cluster": cluster or {}, "own": list(own) if own else None}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where this process found the package
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    watcher = subprocess.Popen([sys.executable, "-m", "posedual_tf.peers", json.dumps(spec)],
                               stdin=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=path))
    try:
        yield
    finally:
        watcher.stdin.close()                  # end of input: the watcher's signal that the wait is over
        watcher.wait()


def _watch(spec: dict) -> None:
    """The watcher of :func:`bounded`: its standard input ends when the wait is over."""
    def over(seconds: float) -> bool:
        return bool(select.select([sys.stdin], [], [], max(seconds, 0))[0])

    timeout_s, notice_s = spec["timeout_s"], spec["notice_s"]
    if over(min(notice_s, timeout_s)):
        return
    if timeout_s > notice_s:
        print(spec["notice"], flush=True)
        if over(timeout_s - notice_s):
            return
    own = tuple(spec["own"]) if spec["own"] else None
    missing = unreachable(spec["cluster"], own) or "the other tasks of the cluster"
    sys.stderr.write(f"error: {spec['give_up'].replace('{missing}', missing)}\n")
    sys.stderr.flush()
    os.kill(spec["pid"], signal.SIGKILL)


#: how TensorFlow words a collective that a peer left (the health check's abort, a collective's own timeout)
_PEER_DOWN = re.compile(r"(?:cluster check alive failed|peer (?:health )?check failed)[^/]*(/job:\w+/\S*task:\d+)"
                        r"|(/job:\w+/replica:\d+/task:\d+)[^\n]*(?:is down|unavailable|failed to connect)", re.I)
_OURS = re.compile(r"\bPeerTimeoutError: (.+)$", re.M)


def from_tf_error(e: BaseException, cluster: dict | None, timeout_s: float,
                  own: tuple[str, int] | None = None) -> PeerTimeoutError | None:
    """The one-line :class:`PeerTimeoutError` for a TensorFlow error that a lost peer caused, or None:
    one of ours raised inside the input pipeline (its text carries it), a cluster task found down by
    TensorFlow's health check, or a collective that timed out (the tasks of ``cluster`` but ``own`` that
    accept no connection are named)."""
    import tensorflow as tf

    if not isinstance(e, tf.errors.OpError):
        return None
    text = str(e)
    ours = _OURS.findall(text)
    if ours:
        return PeerTimeoutError(ours[-1].strip())
    if not cluster:
        return None
    resume = "restart every task TF_CONFIG names: the run resumes from its last checkpoint"
    down = _PEER_DOWN.search(text)
    named = describe_task(down.group(1) or down.group(2), cluster) if down else ""
    if isinstance(e, tf.errors.DeadlineExceededError) or "timed out" in text.lower():
        gone = named or unreachable(cluster, own)
        who = f"{gone} stopped answering" if gone else "another task is stuck or stopped"
        return PeerTimeoutError(f"cluster: a collective of the step waited {timeout_s:g} s (train.peer_timeout_s) "
                                f"for the other tasks: {who}; {resume}")
    if down or isinstance(e, tf.errors.UnavailableError):
        who = named or unreachable(cluster, own) or "another task"
        return PeerTimeoutError(f"cluster: {who} stopped answering during training; {resume}")
    return None


if __name__ == "__main__":
    _watch(json.loads(sys.argv[1]))
