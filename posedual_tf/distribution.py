"""Where a training run executes: the tf.distribute strategy, which process of a cluster writes the
workdir, how many machines read input, and whether the step is compiled with XLA.

Example:
    >>> from posedual_tf.distribution import make_strategy, is_chief, strategy_name, input_workers
    >>> strategy = make_strategy("auto")         # MultiWorker with a TF_CONFIG cluster, Mirrored on >1 GPU
    >>> is_chief(strategy), strategy_name(strategy), input_workers(strategy)
    (True, 'default', 1)
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from posedual_tf import peers

#: the TF_CONFIG roles that train (an evaluator or a parameter server does not take a replica)
TRAINING_ROLES = ("chief", "worker")


def count_tasks(cluster: dict) -> int:
    """How many training tasks a cluster spec (``{"chief": [...], "worker": [...]}``) names."""
    return sum(len(cluster.get(role, []) or []) for role in TRAINING_ROLES)


def cluster_tasks() -> int:
    """How many training tasks TF_CONFIG names; 0 without TF_CONFIG. A TF_CONFIG that TF would
    misread (not JSON, no cluster, a task outside the cluster) is one line naming it."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return 0
    expected = ("TF_CONFIG: expected JSON like {\"cluster\": {\"chief\": [\"host:port\"], \"worker\": [...]}, "
                "\"task\": {\"type\": \"worker\", \"index\": 0}}")
    try:
        spec = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{expected}; it is not JSON ({e.msg} at character {e.pos})") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) and ":" in a for a in v) for v in cluster.values()):
        raise ValueError(f"{expected}; its 'cluster' is {json.dumps(cluster)[:120]}")
    task = spec.get("task", {})
    kind, index = (task.get("type"), task.get("index", 0)) if isinstance(task, dict) else (None, None)
    if task and (kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind])):
        raise ValueError(f"{expected}; its 'task' {json.dumps(task)[:120]} is not one of the cluster's tasks")
    return count_tasks(cluster)


def _cluster_spec(strategy: tf.distribute.Strategy) -> tuple[object, dict]:
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver, (resolver.cluster_spec().as_dict() if resolver is not None else {})


def input_workers(strategy: tf.distribute.Strategy) -> int:
    """How many machines read input (each reads its share of every step)."""
    return max(1, count_tasks(_cluster_spec(strategy)[1]))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the workdir: the cluster's chief, or worker 0 when it names none, or
    the only process."""
    resolver, spec = _cluster_spec(strategy)
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in spec


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The ``train.strategy`` value that makes ``strategy``: multi_worker, mirrored or default."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    return "mirrored" if isinstance(strategy, tf.distribute.MirroredStrategy) else "default"


def make_strategy(name: str, peer_timeout_s: float = 1800.0) -> tf.distribute.Strategy:
    """``auto``: MultiWorkerMirrored when TF_CONFIG names several training tasks (chief and workers),
    Mirrored on >1 GPU, else default. A cluster's waits on its other tasks (for them to start, and in
    every collective) end after ``peer_timeout_s`` with one line (:func:`multi_worker`)."""
    tasks = cluster_tasks()         # also checks TF_CONFIG, whatever the strategy
    if name == "auto":
        if tasks > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return multi_worker(peer_timeout_s)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def tf_config_cluster() -> tuple[dict, tuple[str, int] | None]:
    """TF_CONFIG's cluster (``{role: [HOST:PORT, ...]}``) and this process's task ``(role, index)``."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = spec.get("task") or {}
    return spec.get("cluster") or {}, ((task.get("type"), task.get("index", 0)) if task else None)


def multi_worker(peer_timeout_s: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over TF_CONFIG's cluster, every wait on the other tasks bounded by
    ``peer_timeout_s``: its start (TensorFlow waits without end for every task's server, then for all of
    them in a first collective: a watcher process bounds both, :func:`peers.bounded`), and each
    collective of a step. Past the bound the run ends with one
    line naming the tasks that do not answer."""
    cluster, own = tf_config_cluster()
    others = max(count_tasks(cluster) - 1, 0)
    notice = (f"waiting for the cluster's {others} other task(s) named in TF_CONFIG to start (up to "
              f"{peer_timeout_s:g} s: train.peer_timeout_s)")
    give_up = (f"TF_CONFIG: {{missing}} did not join within {peer_timeout_s:g} s (train.peer_timeout_s); start "
               f"every task TF_CONFIG names, each with its own task, or raise train.peer_timeout_s")

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=peer_timeout_s)
    with peers.bounded(peer_timeout_s, notice, give_up, cluster, own):    # a wait TensorFlow does not bound
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below every ISA that its bfloat16 convolutions run on
CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI")


def cpu_precision_problem(policy: str, environ=None) -> str | None:
    """Why ``train.mixed_precision=policy`` cannot run on this CPU, or None.

    TensorFlow sends bfloat16 convolutions to oneDNN by the CPU's own flags; under an ISA cap below
    AVX512_CORE oneDNN then has no bfloat16 convolution, and the step fails with ``could not create a
    primitive descriptor``. A real CPU without AVX-512 takes TensorFlow's own kernels instead; only the
    cap makes this combination (tests/isa_matrix.sh uses it).

    Example:
        >>> from posedual_tf.distribution import cpu_precision_problem
        >>> cpu_precision_problem("mixed_bfloat16", {"ONEDNN_MAX_CPU_ISA": "AVX2"})[:53]
        'train.mixed_precision=mixed_bfloat16 with ONEDNN_MAX_'
        >>> cpu_precision_problem("mixed_bfloat16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}) is None
        True
    """
    environ = os.environ if environ is None else environ
    cap = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    onednn = environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")
    if policy != "mixed_bfloat16" or cap not in CAPS_WITHOUT_BF16 or not onednn:
        return None
    if tf.config.list_physical_devices("GPU"):        # leaves the runtime unstarted (a strategy may follow)
        return None
    return (f"train.mixed_precision=mixed_bfloat16 with ONEDNN_MAX_CPU_ISA={cap}: oneDNN has no bfloat16 "
            f"convolution below AVX512_CORE, yet TensorFlow sends it bfloat16 ones; unset ONEDNN_MAX_CPU_ISA, "
            f"set TF_ENABLE_ONEDNN_OPTS=0, or train in float32 (train.mixed_precision=none)")


def resolve_jit(setting: str, strategy: tf.distribute.Strategy, deterministic: bool = False) -> bool:
    """XLA only where it pays: a GPU and no multi-replica strategy (auto), or when forced.

    Keras turns XLA off under op determinism (with a warning), so ``deterministic`` with ``true`` is an
    error here and ``auto`` says that it chose no XLA: never a silent drop."""
    if setting == "true" and deterministic:
        raise ValueError("train.jit_compile=true with train.deterministic=true: Keras runs no XLA under op "
                         "determinism; set one of them to false")
    if setting in ("true", "false"):
        return setting == "true"
    wanted = bool(tf.config.list_logical_devices("GPU")) and strategy.num_replicas_in_sync == 1
    if wanted and deterministic:
        print("train.jit_compile=auto: no XLA, since train.deterministic=true (Keras runs no XLA under op "
              "determinism)")
        return False
    return wanted
