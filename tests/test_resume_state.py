"""Everything that steers later decisions survives a resume: the optimizer's step (the learning-rate
position, the per-step draws, the input position), Adam's moments, the float16 loss scale, the finished
epochs, the best score and the validation history, the corrupt-record counts."""
from __future__ import annotations

import json

import h5py
import keras
import numpy as np
import tensorflow as tf

from posedual_tf import checkpoints, config, demo, files, monitoring, training
from posedual_tf.callbacks import CorruptionMonitor, Validation
from posedual_tf.data import corrupt

from tests.conftest import SMALL_DEMO, tiny_batch, tiny_method


def _sets(workdir, epochs):
    return [s.removeprefix("--set=") for s in SMALL_DEMO] + [
        f"workdir={workdir}", f"train.epochs={epochs}", "train.steps_per_epoch=2", "train.val_interval=1",
        "train.lr_step=[3]", "train.lr_factor=0.01", "train.deterministic=true", "train.checkpoint_every_steps=0"]


def _weights(folder):
    out = {}
    for name in ("net1", "net2"):
        with h5py.File(folder / f"{name}.weights.h5") as f:
            f.visititems(lambda n, o: out.__setitem__(f"{name}/{n}", o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_a_run_stopped_after_two_epochs_and_resumed_equals_the_run_that_never_stopped(tmp_path):
    """PoseDual (hard-view draws per step), the learning rate dropped 100x at epoch 3 (after the resume),
    validation every epoch: the resumed run ends with the same weights, the same validation history (the
    two epochs before the resume included: train_result.json) and the same best weights' record."""
    def run(workdir, epochs):
        cfg = config.load("demo_dual", _sets(tmp_path / workdir, epochs))
        demo.prepare_data(cfg)
        return training.run(cfg, progress="none")

    whole = run("whole", 4)
    first = run("cut", 2)
    assert [e["epoch"] for e in first["validation"]] == [1, 2]
    resumed = run("cut", 4)
    assert resumed["final_step"] == whole["final_step"] == 8
    assert [e["epoch"] for e in resumed["validation"]] == [1, 2, 3, 4]
    assert resumed["validation"] == whole["validation"]
    a, b = _weights(tmp_path / "whole" / "final"), _weights(tmp_path / "cut" / "final")
    assert len(a) > 50 and a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    best = [json.loads((tmp_path / w / "best" / "best.json").read_text()) for w in ("whole", "cut")]
    assert best[0] == best[1]
    saved = json.loads((tmp_path / "cut" / "train_result.json").read_text())
    assert [e["epoch"] for e in saved["validation"]] == [1, 2, 3, 4]


def test_a_training_checkpoint_restores_the_optimizer_the_loss_scale_and_the_draws(tmp_path):
    """A float16 PoseDual step's state: step counter, learning rate, Adam's moments, the dynamic loss scale
    and its growth counter, the epoch counter; the restored method draws the same hard views and takes the
    same next step."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        (cfg, nets, m), (_, nets2, m2) = (tiny_method("coco1k_dual", "train.mixed_precision=mixed_float16")
                                          for _ in range(2))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ds = tf.data.Dataset.from_tensors(tiny_batch(seed=1)).repeat()
    m.fit(ds, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    opt = m.optimizer
    opt.dynamic_scale.assign(512.0)
    opt.step_counter.assign(7)
    epoch = tf.Variable(1, dtype=tf.int64)
    state = checkpoints.RunState()
    prefix = checkpoints.training_checkpoint(nets, opt, epoch, state).save(str(tmp_path / "ckpt" / "ckpt"))
    m2.optimizer.build(m2.trainable_variables)
    epoch2 = tf.Variable(0, dtype=tf.int64)
    checkpoints.restore_training(checkpoints.training_checkpoint(nets2, m2.optimizer, epoch2), prefix)
    opt2 = m2.optimizer
    assert int(opt2.iterations.numpy()) == 3 and int(epoch2.numpy()) == 1
    assert float(opt2.dynamic_scale.numpy()) == 512.0 and int(opt2.step_counter.numpy()) == 7
    assert float(opt2.learning_rate.numpy()) == float(opt.learning_rate.numpy())
    for v, w in zip(opt.variables, opt2.variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=v.path)
    np.testing.assert_array_equal(m.step_rng().uniform([8]).numpy(), m2.step_rng().uniform([8]).numpy())
    m.fit(ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    m2.fit(ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    for x, y in zip(nets[0].weights + nets[1].weights, nets2[0].weights + nets2[1].weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


class _Step:
    """What a callback reads of a model: the optimizer's step."""

    def __init__(self, step):
        self.optimizer = type("Opt", (), {"iterations": tf.Variable(step, dtype=tf.int64)})()
        self.stop_training = False


def _validation(workdir, nets, scores, steps=4, epochs=6):
    calls = []

    def validate(split, tag):
        calls.append(split)
        return {"net1": {"AP": scores.pop(0), "peaks_below": 0.0, "peak_mean": 0.5}}

    v = Validation(validate, nets, monitoring.HeadWriters(str(workdir / "tb")), str(workdir), 1, epochs,
                   steps=steps)
    return v, calls


def test_the_best_score_and_the_validation_history_go_on_after_a_resume(tmp_path):
    """A resumed run keeps best/ until a validation beats the score of best/best.json, goes on with the
    checkpoint's history, and validates an epoch whose validation a kill interrupted (its checkpoint is
    saved first) before it trains on."""
    files.claim(str(tmp_path), "train")                         # a training workdir
    nets = [keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")], name="net1")]
    nets[0].set_weights([np.full((2, 1), 1.0, np.float32), np.zeros(1, np.float32)])
    first, _ = _validation(tmp_path, nets, [0.5, 0.3])
    first.set_model(_Step(4))
    first.on_epoch_end(0)                                       # epoch 1: 0.5, the best
    state = checkpoints.RunState()
    state.add("validation", first)
    saved = state.serialize()                                   # the checkpoint at the end of epoch 2 ...
    first.model.optimizer.iterations.assign(8)
    # ... and the run killed during epoch 2's validation; resumed, another network scores below 0.5
    nets[0].set_weights([np.full((2, 1), 2.0, np.float32), np.zeros(1, np.float32)])
    resumed, calls = _validation(tmp_path, nets, [0.4, 0.45, 0.7])
    restored = checkpoints.RunState()
    restored.deserialize(saved)
    restored.add("validation", resumed)
    assert [e["epoch"] for e in resumed.history] == [1]
    resumed.set_model(_Step(8))
    resumed.on_train_begin()                                    # epoch 2's validation, first
    assert calls == ["val"] and [e["epoch"] for e in resumed.history] == [1, 2]
    resumed.on_epoch_end(2)                                     # epoch 3: 0.45 < 0.5
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    assert (best["perf"], best["epoch"]) == (0.5, 1)
    with h5py.File(tmp_path / "best" / "net1.weights.h5") as f:
        kernels = []
        f.visititems(lambda n, o: kernels.append(o[()]) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None)
    assert [float(k.ravel()[0]) for k in kernels] == [1.0]      # the epoch-1 weights, kept
    resumed.on_epoch_end(3)                                     # epoch 4: 0.7 beats it
    assert json.loads((tmp_path / "best" / "best.json").read_text())["epoch"] == 4
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3, 4]
    later = checkpoints.RunState()
    later.add("validation", resumed)
    again, calls = _validation(tmp_path, nets, [0.1])
    restored = checkpoints.RunState()
    restored.deserialize(later.serialize())
    restored.add("validation", again)
    again.set_model(_Step(8))
    again.on_train_begin()                                      # epoch 2 is in the history: nothing to do
    assert calls == []


def test_corrupt_record_counts_and_the_stop_rule_go_on_after_a_resume(tmp_path):
    """The counts that the stop rule divides by the people read (the global step's) come back with the
    checkpoint: 3 bad people in 40 steps of 4 pass at 2 % and stop the resumed run at its first check
    once one more is bad (4 of 164 > 2 %); counted from zero, the resumed run would not stop."""
    counter = corrupt.CorruptionCounter()
    counter.report_count("unlabelled", 3)
    state = checkpoints.RunState()
    state.add("corrupt", counter)
    saved = state.serialize()
    again = corrupt.CorruptionCounter()
    restored = checkpoints.RunState()
    restored.deserialize(saved)
    restored.add("corrupt", again)
    assert again.summary() == counter.summary()
    again.report_count("unlabelled", 1)
    monitor = CorruptionMonitor(again, tf.summary.create_file_writer(str(tmp_path)), 0.02, 4, 1)
    monitor.set_model(_Step(40))
    monitor.check(40)
    assert monitor.failed and monitor.failed.startswith("4 of 164 people")
