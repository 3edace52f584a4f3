"""Where a training run executes: the tf.distribute strategy, which process of a cluster writes the
workdir, how many machines read input, and whether the step is compiled with XLA.

Example:
    >>> strategy = make_strategy("auto")         # MultiWorker with a TF_CONFIG cluster, Mirrored on >1 GPU
    >>> is_chief(strategy), strategy_name(strategy), input_workers(strategy)
    (True, 'default', 1)
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

#: the TF_CONFIG roles that train (an evaluator or a parameter server does not take a replica)
TRAINING_ROLES = ("chief", "worker")


def count_tasks(cluster: dict) -> int:
    """How many training tasks a cluster spec (``{"chief": [...], "worker": [...]}``) names."""
    return sum(len(cluster.get(role, []) or []) for role in TRAINING_ROLES)


def cluster_tasks() -> int:
    """How many training tasks TF_CONFIG names; 0 without TF_CONFIG."""
    raw = os.environ.get("TF_CONFIG", "") or "{}"
    try:
        spec = json.loads(raw)
        return count_tasks(spec.get("cluster", {}) if isinstance(spec, dict) else None)
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"TF_CONFIG: expected JSON with a 'cluster' of 'chief'/'worker' address lists and a "
                         f"'task', got {raw[:200]!r}") from None


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


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``auto``: MultiWorkerMirrored when TF_CONFIG names several training tasks (chief and workers),
    Mirrored on >1 GPU, else default."""
    if name == "auto":
        if cluster_tasks() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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
