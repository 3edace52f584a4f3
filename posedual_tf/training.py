"""The training job behind ``python -m posedual_tf.train``: a :class:`~posedual_tf.task.PoseTask`
(networks, method, inputs, validation) run under a strategy and precision, with the callbacks of
:mod:`callbacks` and :mod:`monitoring` (checkpoints, validation, TensorBoard, collapse monitor,
non-finite guard) and resume.

Example: ``posedual_tf.fit(cfg)`` is :func:`run` (:mod:`posedual_tf.api`'s example trains the demo with it;
a COCO config reads the records its converters wrote).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from posedual_tf import callbacks as run_callbacks
from posedual_tf import best_net, checkpoints, distribution, files, monitoring, peers, precision, resume
from posedual_tf.config import Config, ConfigError, dump
from posedual_tf.data import corrupt
from posedual_tf.evaluation.runner import primary
from posedual_tf.models import bn_groups, builder
from posedual_tf.task import Model, PoseTask


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/Inf loss."""


@dataclasses.dataclass
class Preflight:
    """What :func:`preflight` found: the checkpoint a run resumes from (None: afresh), the settings
    that changed since that run (each a printable line) and the precision it trains in."""

    latest: str | None
    changed: list[str]
    precision: precision.Choice

    def applied(self, cfg: Config) -> Config:
        """``cfg`` training in the chosen precision (``auto`` resolved)."""
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mixed_precision=self.precision.policy))


def choose_precision(cfg: Config) -> precision.Choice:
    """``train.mixed_precision`` for this machine (:mod:`precision`); ``auto`` on a resumed run keeps the
    precision its ``config.yaml`` records."""
    t = cfg.train
    resumed = resume.saved_setting(cfg, "train.mixed_precision") if t.mixed_precision == "auto" else None
    spec = precision.probe_spec(dataclasses.asdict(cfg.model), cfg.data.image_size, cfg.data.heatmap_size,
                                t.replica_batch or t.batch_size)
    return precision.resolve(t.mixed_precision, spec, resumed, distribution.cluster_tasks())


def preflight(cfg: Config) -> Preflight:
    """The checks before any data or TensorFlow work, each a one-line error: the workdir's earlier run
    is one this config may resume (:func:`resume.check_resume`), its checkpoint exists, and a run that
    starts afresh has its initial weights file (never random weights by accident), and its precision can
    run on this CPU (:func:`distribution.cpu_precision_problem`; ``auto`` resolved first,
    :func:`choose_precision`)."""
    choice = choose_precision(cfg)
    problem = distribution.cpu_precision_problem(choice.policy)
    if problem:
        raise ConfigError(problem)
    checked = Preflight(None, [], choice)
    cfg = checked.applied(cfg)
    checked.changed = resume.check_resume(cfg)
    checked.latest = resume.resume_point(cfg)
    if checked.latest is None:
        checkpoints.check_pretrained(cfg)
    return checked


def write_run_config(cfg: Config, workdir: str) -> None:
    """``workdir/config.yaml``: the config this run trains with (written atomically)."""
    files.write_atomic(files.own(workdir, "config.yaml"), dump(cfg))


def run(cfg: Config, progress: str = "epochs", strategy: tf.distribute.Strategy | None = None,
        checked: Preflight | None = None) -> dict:
    """Train ``cfg`` in ``cfg.workdir``, resuming from its last checkpoint when there is one; returns what
    ``train_result.json`` holds.

    ``progress``: ``bar`` (Keras' bar), ``lines`` (a line every ``train.log_every`` steps, for log
    files), ``epochs`` (a line per epoch) or ``none``.
    ``strategy``: made from ``train.strategy`` when not given (MultiWorkerMirroredStrategy must be
    created before any other TF op, so the CLI makes it first). ``checked``: the :func:`preflight` the
    caller already ran (run once).

    Process-wide state: Keras' dtype policy is ``train.mixed_precision`` (``auto`` resolved by
    :func:`preflight`, said in a line and kept in ``train_result.json``) during the run and restored
    after it; Python's, NumPy's and TensorFlow's global seeds are set to ``train.seed``, and
    ``train.deterministic`` turns TensorFlow's op determinism on for the rest of the process
    (TensorFlow has no way to turn it off).
    """
    files.claim(cfg.workdir, "train", accepts=("evaluate",), setting="workdir", create=False)
    checked = checked or preflight(cfg)
    if cfg.train.mixed_precision == "auto":
        print(checked.precision.line())
    cfg = checked.applied(cfg)
    t = cfg.train
    if checked.latest and checked.changed:
        print(f"resuming with changed settings: {'; '.join(checked.changed)}")
    with builder.precision(t.mixed_precision), contextlib.ExitStack() as held:
        strategy = strategy or distribution.make_strategy(t.strategy, t.peer_timeout_s)
        if distribution.is_chief(strategy):       # another writer of the workdir: refused before any work
            held.enter_context(files.lock_if_present(cfg.workdir, "train"))
        try:
            groups = bn_groups.groups_per_replica(t.batch_size, t.replica_batch, strategy.num_replicas_in_sync)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if t.replica_batch:
            print(f"train.replica_batch: BatchNorm and augmentation draws per group of {t.replica_batch} people, "
                  f"{groups} group(s) on each of {strategy.num_replicas_in_sync} replica(s)")
        task = PoseTask(cfg)
        if distribution.is_chief(strategy):
            return _run(task, cfg.workdir, checked.latest, progress, strategy, checked.precision)
        # Another worker of a cluster: it takes part in every save (they are collective) but writes into a
        # folder of its own that it removes, so that only the chief writes the shared workdir.
        scratch = tempfile.mkdtemp(prefix="posedual-worker-")
        try:
            return _run(task, scratch, checked.latest, "none", strategy, checked.precision)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)          # ours: made by mkdtemp above


@dataclasses.dataclass
class _Saves:
    manager: tf.train.CheckpointManager
    epoch: tf.Variable
    step: int                     # the global step the run starts from
    state: checkpoints.RunState   # the callbacks' state, saved in every checkpoint


def _restore(model: Model, workdir: str, latest: str | None, keep: int, steps: int, per_call: int) -> _Saves:
    """The training checkpoint (networks, optimizer, finished epochs, the callbacks' state), restored from
    ``latest``; one-line errors for a resume point the run cannot continue from."""
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    state = checkpoints.RunState()
    ckpt = checkpoints.training_checkpoint(model.nets, model.optimizer, epoch_var, state)
    manager = tf.train.CheckpointManager(ckpt, files.own(workdir, "ckpt"), max_to_keep=keep)
    if latest:
        checkpoints.restore_training(checkpoints.training_checkpoint(model.nets, model.optimizer, epoch_var), latest)
        if not checkpoints.restore_run_state(state, latest):
            print(f"{latest} holds no validation history or corrupt-record counts (written by an older version): "
                  "they count from here")
    step = int(model.optimizer.iterations.numpy())
    within = step % steps
    if within % per_call:
        raise ConfigError(f"train.steps_per_execution={per_call}: {latest} is at step {step}, {within} into its "
                          "epoch, not a multiple of it; resume with the run's own value")
    return _Saves(manager, epoch_var, step, state)


def _callbacks(task: PoseTask, model: Model, workdir: str, saves: _Saves, counter, progress: str,
               strategy: tf.distribute.Strategy, chosen: precision.Choice) -> tuple[list, dict]:
    """The run's callbacks, and the ones :func:`_run` reads afterwards (``guard``, ``monitor``, ``validation``)."""
    cfg, t = task.cfg, task.cfg.train
    steps = task.epoch_steps
    run_dir = os.path.join(files.own(workdir, monitoring.TB_FOLDER), cfg.name)
    writer = tf.summary.create_file_writer(run_dir)
    heads = monitoring.HeadWriters(run_dir)
    monitoring.write_header(writer, cfg, task.head_names, task.sources.labelled.num_instances, (chosen.line(),))
    guard = run_callbacks.FiniteGuard()
    saves.state.add("corrupt", counter)       # the stop rule divides the run's counts by its reads
    monitor = run_callbacks.CorruptionMonitor(counter, writer, cfg.data.max_corrupt_fraction,
                                              t.batch_size * task.streams() // distribution.input_workers(strategy),
                                              t.log_every)
    out = [guard, monitor, run_callbacks.StepCheckpoint(saves.manager, saves.epoch, t.checkpoint_every_steps),
           monitoring.ScalarLogger(writer, t.log_every, cfg.test.peak_threshold, heads),
           run_callbacks.MetricLog(files.own(workdir, "train_log.txt"), t.log_every, steps)]
    if task.mixed:
        out.append(monitoring.PairGrid(writer, cfg, task.pair_images(), t.image_summary_every, task.labelled_ids))
    validation = None
    if cfg.data.val.records:
        splits = ("val", "unlabelled_eval") if cfg.data.unlabelled_eval.records else ("val",)
        validation = run_callbacks.Validation(
            lambda split, tag: task.validate(model.nets, workdir, split, tag), model.nets, heads, workdir,
            t.val_interval, t.epochs, t.select_best_by, splits, steps=steps)
        saves.state.add("validation", validation)
        out.append(validation)
    if progress in ("bar", "lines", "epochs"):
        every = steps if progress == "epochs" else t.log_every
        out.append(monitoring.ProgressLine(steps, t.epochs, every, in_place=progress == "bar"))
    return out, {"guard": guard, "monitor": monitor, "validation": validation}


def _fit(task: PoseTask, model: Model, strategy, counter, step: int, callbacks: list, stopped) -> dict:
    """Train from global ``step`` to the last epoch; the Keras history. A run resumed mid-epoch first
    finishes that epoch (its data start at the resumed step), then trains the remaining epochs whole:
    Keras starts every fit() at an epoch's beginning. ``stopped()``: whether a guard stopped the run."""
    steps, epochs = task.epoch_steps, task.cfg.train.epochs
    initial_epoch, within = divmod(step, steps)
    phases = []                                   # (first step, end epoch, steps per epoch) of each fit()
    if within:
        phases.append((step, initial_epoch + 1, steps - within))
        step = (initial_epoch + 1) * steps
    phases.append((step, epochs, steps))
    history: dict[str, list] = {}
    for start_step, end_epoch, phase_steps in phases:
        first_epoch = start_step // steps
        if first_epoch >= end_epoch or stopped():
            continue
        ds = task.build_inputs(strategy, counter, start_step,
                               full=bool(model.method.jit_compile) and task.cfg.train.fill_short_batches)
        try:
            part = model.method.fit(ds, epochs=end_epoch, initial_epoch=first_epoch, steps_per_epoch=phase_steps,
                                    callbacks=callbacks, verbose=0, shuffle=False).history   # the data order is ours
        except tf.errors.OpError as e:     # a peer lost mid-run (service worker, cluster task): one line
            cluster, own = distribution.tf_config_cluster() if distribution.input_workers(strategy) > 1 else ({}, None)
            raise peers.from_tf_error(e, cluster, task.cfg.train.peer_timeout_s, own) or e
        for k, v in part.items():
            history.setdefault(k, []).extend(v)
    return history


def _run(task: PoseTask, workdir: str, latest: str | None, progress: str, strategy: tf.distribute.Strategy,
         chosen: precision.Choice) -> dict:
    """:func:`run` writing into ``workdir`` (the config's, or a worker's scratch folder), resuming from
    the training checkpoint ``latest`` when there is one; ``chosen``: its precision, for the record."""
    cfg, t = task.cfg, task.cfg.train
    with contextlib.ExitStack() as held:     # the workdir lock, from the moment the run begins
        keras.utils.set_random_seed(t.seed)
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        task.check()
        steps = task.epoch_steps
        model = task.build_model(strategy, initial_weights=latest is None)
        # data and networks are ready: the run begins (train's command line holds the lock from its data preparation)
        held.enter_context(files.writing(workdir, "train", accepts=("evaluate",), setting="workdir"))
        resume.remove_unfinished_saves(workdir)
        saves = _restore(model, workdir, latest, t.keep_checkpoints, steps, t.steps_per_execution)
        if saves.step >= t.epochs * steps:
            print(f"{files.shown_path(workdir)} holds a finished run ({saves.step} steps: {t.epochs} epochs of "
                  f"{steps}); nothing to train\n  (raise train.epochs to continue it, or --set train.resume=false "
                  "to\n  start afresh)")
        elif saves.step:
            print(f"resumed from {files.shown_path(latest)}\n  (epoch {saves.step // steps + 1} of {t.epochs}, step "
                  f"{saves.step % steps} of {steps}; global step {saves.step})")
        counter = corrupt.CorruptionCounter()
        callbacks, named = _callbacks(task, model, workdir, saves, counter, progress, strategy, chosen)
        guard, monitor, validation = named["guard"], named["monitor"], named["validation"]
        write_run_config(cfg, workdir)          # only now: training actually starts
        start = time.time()
        history = _fit(task, model, strategy, counter, saves.step, callbacks,
                       lambda: guard.failed_at is not None or bool(monitor.failed))
        if monitor.failed:
            raise corrupt.CorruptDataError(monitor.failed)
        if guard.failed_at is not None:
            raise NonFiniteLoss(f"non-finite loss {guard.failed_at[1]} at step {guard.failed_at[0]}; "
                                f"training stopped, last good checkpoint: {saves.manager.latest_checkpoint}")
        checkpoints.save_nets(model.nets, files.own(workdir, "final"))
        metrics = validation.last if validation and validation.last else {}
        if validation and not metrics:  # nothing left to train (a finished run re-started): report it anyway
            metrics = task.validate(model.nets, workdir)
        result = _result(task, strategy, model, start, history, metrics, counter, validation)
        result["precision"] = chosen.record()
        files.write_json_atomic(files.own(workdir, "train_result.json"), result)
        return result


def _result(task: PoseTask, strategy, model: Model, start: float, history: dict, metrics: dict, counter,
            validation) -> dict:
    """What ``train_result.json`` holds."""
    return {"config": task.cfg.name, "epochs": task.cfg.train.epochs, "steps_per_epoch": task.epoch_steps,
            "strategy": distribution.strategy_name(strategy), "num_replicas": strategy.num_replicas_in_sync,
            "final_step": int(model.optimizer.iterations.numpy()), "seconds": round(time.time() - start, 1),
            "history": {k: [float(x) for x in v] for k, v in history.items()}, "metrics": metrics,
            "corrupt_records": counter.summary(), "best_network": best_net.record(metrics, primary),
            "unlabelled_metrics": validation.last_unlabelled if validation else {},
            "validation": validation.history if validation else []}
