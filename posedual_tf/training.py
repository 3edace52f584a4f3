"""The training job behind ``python -m posedual_tf.train``: strategy, precision, model, data,
callbacks (checkpoints, validation, TensorBoard, collapse monitor, non-finite guard) and resume.

Example (the demo's synthetic data first; a COCO config reads the records its converters wrote):
    >>> from posedual_tf import config, demo, training
    >>> cfg = config.load("demo_dual", ["train.epochs=1"])
    >>> demo.prepare_data(cfg)
    >>> result = training.run(cfg, progress="none")
    >>> result["metrics"]["net1"]["AP"]
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from posedual_tf import checkpoints, distribution, files, monitoring, resume
from posedual_tf.config import Config, ConfigError
from posedual_tf.data import corrupt, pipeline
from posedual_tf.evaluation import runner
from posedual_tf.methods import build_method, make_optimizer
from posedual_tf.models import bn_groups, builder


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/Inf loss."""


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)


class StepCheckpoint(monitoring.StepCallback):
    """Save networks + optimiser (its step is the input position) + finished epochs every N steps and
    at every epoch's end, numbered by the step (last K kept); never after a non-finite loss. Saves run
    on the training thread between two steps (on_steps_done)."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch_var: tf.Variable, every: int):
        super().__init__()
        self.manager, self.epoch_var, self.every = manager, epoch_var, every
        self.saved_at = -1

    def _save(self, step: int):
        # the epoch's running means so far: non-finite from a non-finite step on (one read, at saves only)
        results = [m.result() for m in self.model.metrics]
        if not all(np.isfinite(np.asarray(r)).all() for r in results if not isinstance(r, dict)):
            return
        if step != self.saved_at:
            self.manager.save(checkpoint_number=step)
            self.saved_at = step

    def on_steps_done(self, step):
        if self.every and step % self.every == 0:
            self._save(step)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_var.assign(epoch + 1)
        self.saved_at = -1                  # the epoch counter changed: save even at the same step
        self._save(self._epoch_start + self.params["steps"])   # always (on_steps_done: every N steps only)


class FiniteGuard(monitoring.StepCallback):
    """Stop at the first non-finite loss; the last epoch checkpoint stays the last good one (the
    checkpoints check the loss themselves: the loop may run a step or two past it before it stops)."""

    def __init__(self):
        super().__init__()
        self.failed_at = None

    def on_step(self, step, logs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.failed_at is None:
            self.failed_at = (step, float(loss))
            self.model.stop_training = True


class CorruptionMonitor(monitoring.StepCallback):
    """Corrupt records to TensorBoard; stops training past ``data.max_corrupt_fraction`` of the people read."""

    def __init__(self, counter: corrupt.CorruptionCounter, writer, max_fraction: float, people_per_step: int,
                 every: int):
        super().__init__()
        self.counter, self.writer, self.max_fraction = counter, writer, max_fraction
        self.people_per_step, self.every = people_per_step, max(1, every)
        self.failed: str | None = None
        self.logged = 0

    def check(self, step: int):
        bad = self.counter.total()
        if bad != self.logged:
            with self.writer.as_default(step=step):
                tf.summary.scalar("data/corrupt_records", bad, description=(
                    "Training records skipped so far because they failed to parse or decode (the run stops "
                    "past data.max_corrupt_fraction of the people read; per shard in train_result.json)."))
            self.logged = bad
        read = bad + step * self.people_per_step
        if bad and bad / max(read, 1) > self.max_fraction:
            self.failed = (f"{bad} of {read} people read so far failed to parse or decode ({bad / read:.2%} > "
                           f"data.max_corrupt_fraction {self.max_fraction:g}); worst shard: "
                           f"{self.counter.worst_shard()} (re-convert it, or raise data.max_corrupt_fraction)")
            self.model.stop_training = True

    def on_step(self, step, logs):
        if step % self.every == 0:
            self.check(step)

    def on_epoch_end(self, epoch, logs=None):          # every step's on_step has run (Keras waits for them)
        super().on_epoch_end(epoch, logs)
        self.check(self._epoch_start + self.params["steps"])


class MetricLog(monitoring.StepCallback):
    """Every metric of the step, every N steps and at each epoch's end, as one line of the run's log file
    (the console shows only :class:`~posedual_tf.monitoring.ProgressLine`)."""

    def __init__(self, path: str, every: int, steps: int):
        super().__init__()
        self.path, self.every, self.steps = path, max(1, every), steps

    def on_step(self, step, logs):
        if step % self.every and step % self.steps:
            return
        values = ", ".join(f"{k} {float(v):.6g}" for k, v in (logs or {}).items())
        with open(self.path, "a") as f:              # a log: appended, line by line
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} step {step} (epoch {(step - 1) // self.steps + 1}): "
                    f"{values}\n")


class Validation(keras.callbacks.Callback):
    """Evaluate every N epochs and after the last; keep the best weights by net 1's first stat, or the
    mean over the networks (``train.select_best_by``)."""

    def __init__(self, cfg: Config, nets, writer, workdir: str, interval: int, epochs: int):
        super().__init__()
        self.cfg, self.nets, self.writer, self.workdir = cfg, nets, writer, workdir
        self.interval, self.epochs = max(1, interval), epochs
        self.best = -math.inf
        self.last: dict = {}
        self.last_unlabelled: dict = {}
        self.history: list[dict] = []
        best_file = os.path.join(workdir, "best", "best.json")
        if os.path.exists(best_file):
            with open(best_file) as f:
                self.best = json.load(f)["perf"]

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.interval and epoch + 1 != self.epochs:
            return
        metrics = runner.evaluate(self.cfg, self.nets, workdir=self.workdir, progress=False)
        self.last = metrics
        sets = {"val": metrics}
        if self.cfg.data.unlabelled_eval.records:       # the unlabelled people, scored with their GT
            sets["unl"] = self.last_unlabelled = runner.evaluate(self.cfg, self.nets, workdir=self.workdir,
                                                                 progress=False, tag="_unlabelled",
                                                                 split="unlabelled_eval")
        step = int(self.model.optimizer.iterations.numpy())
        entry = {"epoch": epoch + 1, "step": step}
        lines = []
        for prefix, ms in sets.items():
            heads = [h for h in ms if not h.startswith("_")]
            name = lambda h: h if prefix == "val" else f"unl_{h}"     # history keys: net1, unl_net1, ...
            entry.update({name(h): runner.primary(ms[h]) for h in heads})
            entry.update({f"{name(h)}_{k}": ms[h][k] for h in heads for k in ("peaks_below", "peak_mean")})
            label = "val" if prefix == "val" else "unlabelled"
            lines.append(f"epoch {epoch + 1} {label}: " + " ".join(f"{h} {runner.primary(ms[h]):.4f}" for h in heads))
            monitoring.write_eval(self.writer, step, "val" if prefix == "val" else "unlabelled", ms, runner.primary)
        self.history.append(entry)
        perf = selection_score(self.cfg, metrics)
        print("\n".join(lines), flush=True)
        if perf > self.best:
            self.best = perf
            checkpoints.save_nets(self.nets, files.own(self.workdir, "best"), extra={
                "best.json": {"perf": perf, "epoch": epoch + 1, "select_best_by": self.cfg.train.select_best_by}})


def selection_score(cfg: Config, metrics: dict) -> float:
    """The number that keeps the best weights: net 1's AP (or PCKh), or the networks' mean."""
    nets = sorted(h for h in metrics if h.startswith("net"))
    if cfg.train.select_best_by == "mean":
        return float(np.mean([runner.primary(metrics[h]) for h in nets]))
    return runner.primary(metrics["net1"])


def first_unlabelled_batch(cfg: Config, n: int = 4) -> dict | None:
    """The first ``n`` unlabelled people (fixed, unshuffled) for the easy/hard image summaries."""
    if cfg.method.name == "supervised" or not cfg.data.unlabelled.records:
        return None
    lab = pipeline.open_source(cfg.data.labelled, "labelled")
    unl = pipeline.open_source(cfg.data.unlabelled, "unlabelled")
    parse = pipeline.unlabelled_parser(cfg, lab.joint_set.union_mask())
    ds = tf.data.Dataset.zip((pipeline.instances(unl).take(n), tf.data.Dataset.range(n)))
    return next(iter(ds.map(parse).batch(n)), None)


class MissingGroundTruthError(FileNotFoundError):
    """A set evaluated during training has no ground-truth file."""


def check_eval_sets(cfg: Config) -> None:
    """Before any training: every set evaluated during training has its ground-truth file."""
    for split in ("val", "unlabelled_eval"):
        ds = getattr(cfg.data, split)
        if ds.records and not os.path.exists(ds.annotations):
            raise MissingGroundTruthError(f"data.{split}.annotations: ground-truth file not found: {ds.annotations!r} "
                                    f"(needed to evaluate data.{split}.records during training)")


def write_run_config(cfg: Config, workdir: str) -> None:
    """``workdir/config.yaml``: the config this run trains with (written atomically)."""
    from posedual_tf.config import dump

    files.write_atomic(files.own(workdir, "config.yaml"), dump(cfg))


def build(cfg: Config, strategy: tf.distribute.Strategy, steps_per_epoch: int, labelled_ids,
          initial_weights: bool = True):
    """Networks (initialised from model.pretrained unless ``initial_weights`` is False: a resumed run
    restores every weight from its checkpoint), the method and its optimiser."""
    with strategy.scope():
        nets = builder.build_networks(cfg)
        path = checkpoints.check_pretrained(cfg) if initial_weights else None
        names = ", ".join(net.name for net in nets)
        if not initial_weights:
            print(f"resuming: {names} take every weight from the checkpoint (model.pretrained not read)")
        elif path is None:
            print(f"model.pretrained: none: {names} start from random weights")
        else:
            print(f"initial weights of {names}: {checkpoints.load_nets(nets, path, cfg.model.backbone)}")
        method = build_method(cfg, nets, labelled_ids)
        optimizer = make_optimizer(cfg, steps_per_epoch)
        optimizer.build(method.trainable_variables)
        method.compile(optimizer=optimizer, steps_per_execution=cfg.train.steps_per_execution,
                       jit_compile=distribution.resolve_jit(cfg.train.jit_compile, strategy, cfg.train.deterministic))
    return nets, method, optimizer


def _train_data(cfg: Config, strategy: tf.distribute.Strategy, counter, start_step: int):
    """The training stream from ``start_step`` on; under several replicas every input pipeline takes
    its own positions of the same epoch orders (pipeline.train_dataset)."""
    if strategy.num_replicas_in_sync > 1:
        return strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.train_dataset(cfg, input_context=ctx, counter=counter, start_step=start_step)[0])
    return pipeline.train_dataset(cfg, counter=counter, start_step=start_step)[0]


def run(cfg: Config, progress: str = "epochs", strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train ``cfg`` in ``cfg.workdir``, resuming from its last checkpoint when there is one.

    ``progress``: ``bar`` (Keras' bar), ``lines`` (a line every ``train.log_every`` steps, for log
    files), ``epochs`` (a line per epoch) or ``none``.
    ``strategy``: made from ``train.strategy`` when not given (MultiWorkerMirroredStrategy must be
    created before any other TF op, so the CLI makes it first).
    """
    t = cfg.train
    files.claim(cfg.workdir, "train", accepts=("evaluate",), setting="workdir", create=False)
    changed = resume.check_resume(cfg)
    latest = resume.resume_point(cfg)
    if latest and changed:
        print(f"resuming with changed settings: {'; '.join(changed)}")
    if latest is None:
        checkpoints.check_pretrained(cfg)
    set_precision(t.mixed_precision)
    strategy = strategy or distribution.make_strategy(t.strategy)
    try:
        groups = bn_groups.groups_per_replica(t.batch_size, t.replica_batch, strategy.num_replicas_in_sync)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if t.replica_batch:
        print(f"train.replica_batch: BatchNorm and augmentation draws per group of {t.replica_batch} people, "
              f"{groups} group(s) on each of {strategy.num_replicas_in_sync} replica(s)")
    if distribution.is_chief(strategy):
        return _run(cfg, cfg.workdir, latest, progress, strategy)
    # Another worker of a cluster: it takes part in every save (they are collective) but writes into a
    # folder of its own that it removes, so that only the chief writes the shared workdir.
    scratch = tempfile.mkdtemp(prefix="posedual-worker-")
    try:
        return _run(cfg, scratch, latest, "none", strategy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)          # ours: made by mkdtemp above


def _run(cfg: Config, workdir: str, latest: str | None, progress: str, strategy: tf.distribute.Strategy) -> dict:
    """:func:`run` writing into ``workdir`` (the config's, or a worker's scratch folder), resuming from
    the training checkpoint ``latest`` when there is one."""
    with contextlib.ExitStack() as held:     # the workdir lock, from the moment the run begins
        t = cfg.train
        resuming = latest is not None
        keras.utils.set_random_seed(t.seed)
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()

        counter = corrupt.CorruptionCounter()
        lab = pipeline.open_source(cfg.data.labelled, "labelled")
        check_eval_sets(cfg)
        steps, _ = pipeline.epoch_steps(cfg)
        if steps % t.steps_per_execution:
            raise ConfigError(f"train.steps_per_execution={t.steps_per_execution}: an epoch is {steps} steps, not a "
                              f"multiple of it (Keras would run past the epoch's end); set train.steps_per_epoch "
                              f"to a multiple, or train.steps_per_execution to a divisor of {steps}")
        labelled_ids = list(lab.joint_set.to_union)
        nets, method, optimizer = build(cfg, strategy, steps, labelled_ids, initial_weights=not resuming)
        files.claim(workdir, "train", accepts=("evaluate",), setting="workdir")  # data and networks are ready
        held.enter_context(files.lock(workdir, "a training run"))                # the run begins
        resume.remove_unfinished_saves(workdir)

        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        ckpt = checkpoints.training_checkpoint(nets, optimizer, epoch_var)
        manager = tf.train.CheckpointManager(ckpt, files.own(workdir, "ckpt"), max_to_keep=t.keep_checkpoints)
        if latest:
            checkpoints.restore_training(ckpt, latest)
        step = int(optimizer.iterations.numpy())
        initial_epoch, within = divmod(step, steps)
        if within % t.steps_per_execution:
            raise ConfigError(f"train.steps_per_execution={t.steps_per_execution}: {latest} is at step {step}, "
                              f"{within} into its epoch, not a multiple of it; resume with the run's own value")
        if step >= t.epochs * steps:
            print(f"{workdir} holds a finished run ({step} steps: {t.epochs} epochs of {steps}); nothing to train "
                  "(raise train.epochs to continue it, or --set train.resume=false to start afresh)")
        elif step:
            print(f"resumed from {latest} (epoch {initial_epoch + 1} of {t.epochs}, step {within} of {steps}; "
                  f"global step {step})")

        writer = tf.summary.create_file_writer(os.path.join(files.own(workdir, monitoring.TB_FOLDER), cfg.name))
        monitoring.write_header(writer, cfg, ["net1"] if len(nets) == 1 else ["net1", "net2", "ensemble"])
        guard = FiniteGuard()
        validation = Validation(cfg, nets, writer, workdir, t.val_interval, t.epochs) if cfg.data.val.records else None
        streams = 2 if cfg.method.name != "supervised" and cfg.data.unlabelled.records else 1
        workers = distribution.input_workers(strategy)
        monitor = CorruptionMonitor(counter, writer, cfg.data.max_corrupt_fraction,
                                    t.batch_size * streams // workers, t.log_every)
        callbacks = [guard, monitor, StepCheckpoint(manager, epoch_var, t.checkpoint_every_steps),
                     monitoring.ScalarLogger(writer, t.log_every, cfg.test.peak_threshold),
                     MetricLog(files.own(workdir, "train_log.txt"), t.log_every, steps)]
        if cfg.method.name != "supervised":
            callbacks.append(monitoring.PairGrid(writer, cfg, first_unlabelled_batch(cfg), t.image_summary_every,
                                                 labelled_ids))
        if validation:
            callbacks.append(validation)
        if progress in ("bar", "lines", "epochs"):
            every = steps if progress == "epochs" else t.log_every
            callbacks.append(monitoring.ProgressLine(steps, t.epochs, every, in_place=progress == "bar"))
        write_run_config(cfg, workdir)          # only now: training actually starts
        start = time.time()
        history: dict[str, list] = {}
        # A run resumed mid-epoch first finishes that epoch (its data start at the resumed step), then
        # trains the remaining epochs whole: Keras starts every fit() at an epoch's beginning.
        phases = []                                   # (first step, end epoch, steps per epoch) of each fit()
        if within:
            phases.append((step, initial_epoch + 1, steps - within))
            step = (initial_epoch + 1) * steps
        phases.append((step, t.epochs, steps))
        for start_step, end_epoch, phase_steps in phases:
            first_epoch = start_step // steps
            if first_epoch >= end_epoch or guard.failed_at is not None or monitor.failed:
                continue
            ds = _train_data(cfg, strategy, counter, start_step)
            part = method.fit(ds, epochs=end_epoch, initial_epoch=first_epoch, steps_per_epoch=phase_steps,
                              callbacks=callbacks, verbose=0, shuffle=False).history   # the data order is ours
            for k, v in part.items():
                history.setdefault(k, []).extend(v)
        if monitor.failed:
            raise corrupt.CorruptDataError(monitor.failed)
        if guard.failed_at is not None:
            raise NonFiniteLoss(f"non-finite loss {guard.failed_at[1]} at step {guard.failed_at[0]}; "
                                f"training stopped, last good checkpoint: {manager.latest_checkpoint}")
        checkpoints.save_nets(nets, files.own(workdir, "final"))
        metrics = validation.last if validation and validation.last else {}
        if validation and not metrics:  # nothing left to train (a finished run re-started): report it anyway
            metrics = runner.evaluate(cfg, nets, workdir=workdir, progress=False)
        result = {"config": cfg.name, "epochs": t.epochs, "steps_per_epoch": steps,
                  "strategy": distribution.strategy_name(strategy), "num_replicas": strategy.num_replicas_in_sync,
                  "final_step": int(optimizer.iterations.numpy()), "seconds": round(time.time() - start, 1),
                  "history": {k: [float(x) for x in v] for k, v in history.items()}, "metrics": metrics,
                  "corrupt_records": counter.summary(),
                  "unlabelled_metrics": validation.last_unlabelled if validation else {},
                  "validation": validation.history if validation else []}
        files.write_json_atomic(files.own(workdir, "train_result.json"), result)
        return result
