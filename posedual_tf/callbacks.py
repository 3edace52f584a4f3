"""The callbacks that steer a training run: step checkpoints, the non-finite and corrupt-data guards, the
run's log file and validation with best-weight selection (TensorBoard and console ones: :mod:`monitoring`).

Example (a NaN in the 3rd batch stops the run; ``failed_at`` is (step, loss)):
    >>> import numpy as np
    >>> import keras
    >>> import math
    >>> from posedual_tf.callbacks import FiniteGuard
    >>> x = np.ones([8, 1], np.float32); x[4] = np.nan
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> guard = FiniteGuard()
    >>> _ = model.fit(x, np.zeros([8, 1]), batch_size=2, shuffle=False, verbose=0, callbacks=[guard])
    >>> guard.failed_at[0], math.isnan(guard.failed_at[1])
    (3, True)
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from posedual_tf import checkpoints, files, monitoring
from posedual_tf.data import corrupt
from posedual_tf.evaluation import runner


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
    mean over the networks (``select_best_by``).

    A resumed run goes on with the best score of ``best/best.json`` (the weights kept there) and the
    history of its checkpoint (:meth:`state`); resumed at the end of an epoch whose validation did not
    finish (the epoch's checkpoint is saved before it), it validates that epoch first.

    Args:
      validate: ``(split, tag) -> metrics`` of the networks on ``data.<split>`` (``PoseTask.validate``).
      splits: the evaluated splits: ``val``, and ``unlabelled_eval`` (the unlabelled people with their GT).
      steps: steps per epoch (None: a resumed run does not look for an unfinished validation).
    """

    def __init__(self, validate: Callable[[str, str], dict], nets, heads, workdir: str, interval: int, epochs: int,
                 select_best_by: str = "net1", splits: tuple[str, ...] = ("val",), steps: int | None = None):
        super().__init__()
        self.validate, self.nets, self.heads, self.workdir = validate, nets, heads, workdir
        self.interval, self.epochs, self.steps = max(1, interval), epochs, steps
        self.select_best_by, self.splits = select_best_by, splits
        self.best = -math.inf
        self.last: dict = {}
        self.last_unlabelled: dict = {}
        self.history: list[dict] = []
        best_file = os.path.join(workdir, "best", "best.json")
        if os.path.exists(best_file):
            best = files.read_json(best_file, "the best validation written by training")
            if not (isinstance(best, dict) and isinstance(best.get("perf"), (int, float))):
                raise files.BadFileError(f"{best_file}: holds no best validation ('perf', a number); it is written by "
                                         "training (move the file away to start the best score afresh)")
            self.best = best["perf"]

    def state(self) -> dict:
        """The validations so far, as a training checkpoint keeps them."""
        return {"history": self.history}

    def load_state(self, state: dict) -> None:
        self.history = [dict(e) for e in state.get("history", [])]

    def _due(self, epoch: int) -> bool:
        """Whether the end of epoch ``epoch`` (from 1) is validated."""
        return epoch % self.interval == 0 or epoch == self.epochs

    def on_train_begin(self, logs=None):
        if not self.steps:
            return
        epoch, within = divmod(int(self.model.optimizer.iterations.numpy()), self.steps)
        if epoch and not within and self._due(epoch) and all(e["epoch"] != epoch for e in self.history):
            print(f"epoch {epoch}'s validation did not finish before the run stopped: validating it now", flush=True)
            self.on_epoch_end(epoch - 1)

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch + 1):
            return
        self.last = metrics = self.validate("val", "")
        sets = {"val": metrics}
        if "unlabelled_eval" in self.splits:
            sets["unl"] = self.last_unlabelled = self.validate("unlabelled_eval", "_unlabelled")
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
            monitoring.write_eval(self.heads, step, "val" if prefix == "val" else "unlabelled", ms, runner.primary)
        self.history.append(entry)
        perf = selection_score(self.select_best_by, metrics)
        print("\n".join(lines), flush=True)
        if perf > self.best:
            self.best = perf
            checkpoints.save_nets(self.nets, files.own(self.workdir, "best"), extra={
                "best.json": {"perf": perf, "epoch": epoch + 1, "select_best_by": self.select_best_by}})


def selection_score(select_best_by: str, metrics: dict) -> float:
    """The number that keeps the best weights (``train.select_best_by``): net 1's AP (or PCKh), or the
    networks' mean."""
    nets = sorted(h for h in metrics if h.startswith("net"))
    if select_best_by == "mean":
        return float(np.mean([runner.primary(metrics[h]) for h in nets]))
    return runner.primary(metrics["net1"])
