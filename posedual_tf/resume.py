"""Resuming a training workdir: which checkpoint a run resumes from, which settings may change in
between (every change is stated; those that change which data a step sees are refused), and the
unfinished saves a killed run leaves behind.

Example:
    >>> from posedual_tf.resume import check_resume, resume_point
    >>> import tempfile
    >>> from posedual_tf import config
    >>> cfg = config.load("demo_sup", [f"workdir={tempfile.mkdtemp()}"])
    >>> resume_point(cfg) is None                  # None: the run starts afresh
    True
    >>> check_resume(cfg)                          # the changed settings; ResumeMismatchError for a change of meaning
    []
"""
from __future__ import annotations

import glob
import os
import shutil

import tensorflow as tf
import yaml

from posedual_tf import files
from posedual_tf.config import Config


def resume_point(cfg: Config) -> str | None:
    """The training checkpoint a run of ``cfg`` resumes from (None: it starts afresh)."""
    if not cfg.train.resume:
        return None
    folder = os.path.join(cfg.workdir, "ckpt")
    state = os.path.join(folder, "checkpoint")
    if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)) or (
            os.path.isdir(cfg.workdir) and os.path.lexists(folder) and not files.is_listed(cfg.workdir, "ckpt")):
        what = f"a link to {os.readlink(folder)}" if os.path.islink(folder) else \
            "a file" if not os.path.isdir(folder) else "a folder that training did not write (not on the workdir's list)"
        raise ResumeMismatchError(f"{folder}: is {what}, not the checkpoint folder training writes; nothing was "
                                  "written (move it away, or train in another workdir)")
    if not os.path.lexists(state):
        return None
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("CRITICAL")        # TF logs a missing checkpoint as an ERROR line, then returns None
    try:
        latest = tf.train.latest_checkpoint(folder)
    finally:
        logger.setLevel(level)
    if latest is None:           # garbage, or naming deleted files: training would restart and overwrite it
        raise ResumeMismatchError(f"{state}: does not name a checkpoint that exists (a damaged or edited state file, or "
                                  "deleted ckpt-N files); nothing was written: restore it, or start afresh with "
                                  "--set train.resume=false or another workdir")
    return latest


class ResumeMismatchError(ValueError):
    """The workdir holds a run of another model or data config."""


#: Settings that may change between a run and its resumption (they change no tensor and no data).
RESUME_FREE = {"model.pretrained", "model.weights_dir", "data.num_parallel_calls", "data.max_corrupt_fraction"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: Settings of ``train`` that decide which data each step sees or what a step computes: a resumed run
#: must keep them (model, data and method settings too, except RESUME_FREE).
RESUME_FIXED_TRAIN = {"train.batch_size", "train.steps_per_epoch", "train.seed", "train.mixed_precision",
                      "train.pass_schedule", "train.deterministic", "train.replica_batch", "train.shared_draws"}


def _resumed_config(cfg: Config) -> dict | None:
    """The ``config.yaml`` (as read from YAML) of the run that ``cfg`` resumes; None when it starts afresh
    or the workdir holds none."""
    saved = os.path.join(cfg.workdir, "config.yaml")
    if resume_point(cfg) is None or not os.path.exists(saved):
        return None
    with open(saved) as f:
        return yaml.safe_load(f) or {}


def saved_setting(cfg: Config, key: str):
    """``key`` (dotted, e.g. ``train.mixed_precision``) in the ``config.yaml`` of the run that ``cfg``
    resumes; None when it starts afresh or the file does not say."""
    return _flat(_resumed_config(cfg) or {}).get(key)


def check_resume(cfg: Config) -> list[str]:
    """Refuse, in one line, to resume a workdir's run with a different model, data or method config, or
    with a train setting that changes which data a step sees (RESUME_FIXED_TRAIN); return the other
    changed settings as ``key: before -> now`` lines, which the run prints (never a silent change).
    Paths inside a moved workdir are compared relative to it."""
    raw_before = _resumed_config(cfg)
    if raw_before is None:
        return []
    from posedual_tf.config import dump

    raw_now = yaml.safe_load(dump(cfg))
    old_root = str(raw_before.get("workdir", ""))

    def moved(value):
        return cfg.workdir + value[len(old_root):] if old_root and isinstance(value, str) and \
            value.startswith(old_root + "/") else value

    before = {k: moved(v) for k, v in _flat({k: v for k, v in raw_before.items() if k != "workdir"}).items()}
    now = _flat({k: v for k, v in raw_now.items() if k != "workdir"})
    changed = []
    for key in sorted(set(before) | set(now)):
        if key in RESUME_FREE or before.get(key) == now.get(key) or key in ("name", "description"):
            continue
        if key.split(".")[0] in ("model", "data", "method", "fixes") or key in RESUME_FIXED_TRAIN:
            raise ResumeMismatchError(
                f"{cfg.workdir} holds a run trained with {key}={before.get(key)!r}, this config says "
                f"{now.get(key)!r}; use another workdir (--set workdir=...) or start afresh there with "
                "--set train.resume=false")
        changed.append(f"{key}: {before.get(key)!r} -> {now.get(key)!r}")
    return changed


def remove_unfinished_saves(workdir: str) -> list[str]:
    """Remove the ``ckpt/ckpt-N_temp`` folders a killed save left (TF writes a checkpoint there and
    renames it when whole); only inside a ckpt/ folder that the workdir's ownership list names."""
    if not files.is_listed(workdir, "ckpt"):
        return []
    gone = [p for p in glob.glob(os.path.join(workdir, "ckpt", "*_temp")) if os.path.isdir(p)]
    for path in gone:
        shutil.rmtree(path)            # ours: a save of our own CheckpointManager that never finished
    return gone
