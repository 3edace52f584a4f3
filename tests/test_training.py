"""Train steps: no gradient through teachers, the reference loss, learning, resume, bf16 (several devices
and clusters: test_distribution.py)."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import config, methods
from posedual_tf.data import augment
from posedual_tf.methods.base import joints_mse
from posedual_tf.models import builder
from posedual_tf.data.settings import TrainDataSettings

from tests.conftest import SMALL_DEMO, TINY, TINY_SETS, mse_np as _mse_np, run_python as _run, tiny_batch as _batch, \
    tiny_method as _method, need_bfloat16


def test_joints_mse_matches_reference_formula():
    lab, _ = _batch(1)
    pred = np.random.default_rng(2).uniform(size=lab["target"].shape).astype(np.float32)
    assert float(joints_mse(pred, lab["target"], lab["weight"])) == pytest.approx(
        _mse_np(pred, lab["target"], lab["weight"]), rel=1e-5)


@pytest.mark.parametrize("name", ["coco1k_dual", "coco1k_cons"])
def test_teachers_get_no_gradient(name):
    cfg, nets, m = _method(name, "method.mask_joint_num=3")
    lab, unl = _batch(3)
    with tf.GradientTape(persistent=True) as tape:
        out = m.compute_losses(tape, lab, unl, augment.StatelessRng([1, 2]))
    if name == "coco1k_dual":
        f1, f2 = nets
        # net 1's consistency term reaches net 1 only through its hard pass, never net 2 (its teacher)
        assert all(g is None for g in tape.gradient(out["cons_nets"][0], f2.trainable_variables))
        assert all(g is None for g in tape.gradient(out["cons_nets"][1], f1.trainable_variables))
        assert all(g is not None for g in tape.gradient(out["cons_nets"][0], f1.trainable_variables))
    # a teacher pass alone, under a tape, has no gradient path
    with tf.GradientTape() as tape:
        t = m.teacher(nets[0], unl["image"])
        total = tf.reduce_sum(t)
    assert all(g is None for g in tape.gradient(total, nets[0].trainable_variables))


def test_one_step_loss_equals_hand_computation():
    cfg, (f1, f2), m = _method("coco1k_dual", "method.unsup_transform=false")
    lab, unl = _batch(4)
    # training-mode outputs (batch statistics) before the update; the hard view equals the easy view here
    s1, s2 = f1(lab["image"], training=True).numpy(), f2(lab["image"], training=True).numpy()
    u1, u2 = f1(unl["image"], training=True).numpy(), f2(unl["image"], training=True).numpy()
    expected = 0.5 * (_mse_np(s1, lab["target"], lab["weight"]) + _mse_np(s2, lab["target"], lab["weight"])) + \
        _mse_np(u1, u2, unl["weight"]) + _mse_np(u2, u1, unl["weight"])
    cons = _mse_np(u1, u2, unl["weight"]) + _mse_np(u2, u1, unl["weight"])
    # the same maps weighed on every union joint: what a loss that ignored the weights would give
    unweighted = _mse_np(u1, u2, np.ones_like(unl["weight"])) + _mse_np(u2, u1, np.ones_like(unl["weight"]))
    assert abs(unweighted - cons) > 0.05 * cons
    logs = m.train_on_batch((lab, unl), return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    # the consistency term on its own (it is ~1e-5 of the loss here, below the loss's tolerance): only the
    # joints the unlabelled weight keeps count, so the 7 union ids COCO never labels are not supervised
    assert logs["loss_cons"] == pytest.approx(cons, rel=1e-4)
    # logged in the reference's units: loss_pose = 0.5 (net 1 + net 2), loss_cons = cons 1 + cons 2
    assert logs["loss_pose"] == pytest.approx(
        0.5 * (_mse_np(s1, lab["target"], lab["weight"]) + _mse_np(s2, lab["target"], lab["weight"])), rel=1e-4)
    assert logs["loss_pose"] + logs["loss_cons"] == pytest.approx(logs["loss"], rel=1e-5)


def test_epoch_averages_weight_as_the_reference_meters():
    """The reference's AverageMeters weight a batch's loss by its labelled batch size and the accuracy by
    its number of valid joints, so a partial last batch counts less."""
    _, _, m = _method("coco1k_sup")
    m.record(4, 10.0, loss=1.0, loss_pose=1.0, acc=0.2)
    logs = m.record(2, 30.0, loss=4.0, loss_pose=4.0, acc=0.6)
    assert float(logs["loss"]) == pytest.approx((4 * 1.0 + 2 * 4.0) / 6)
    assert float(logs["acc"]) == pytest.approx((10 * 0.2 + 30 * 0.6) / 40)


def test_adam_matches_torch_for_100_steps_including_tiny_gradients():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    # float64 on both sides, so that what is compared is the update rule, not float32 rounding of the sum
    init = rng.normal(size=(64,))
    # gradients spanning 1e-12 .. 1: where sqrt(v) is near eps the epsilon placement decides the step
    scales = 10.0 ** rng.uniform(-12, 0, size=(64,))
    grads = [rng.normal(size=(64,)) * scales for _ in range(100)]
    for wd, fix in ((0.0, "false"), (1e-4, "true")):
        cfg = config.load("coco1k_sup", [f"fixes.weight_decay={fix}"])
        opt = methods.make_optimizer(cfg, 1000)
        assert isinstance(opt, methods.TorchAdam)
        var = keras.Variable(init.copy(), dtype="float64")
        p = torch.nn.Parameter(torch.from_numpy(init.copy()))
        ref = (torch.optim.AdamW if fix == "true" else torch.optim.Adam)([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                                                          weight_decay=wd)
        for g in grads:
            opt.apply_gradients([(tf.constant(g), var)])
            p.grad = torch.from_numpy(g.copy())
            ref.step()
        moved_ref = p.detach().numpy() - init
        moved = var.numpy() - init
        np.testing.assert_allclose(moved, moved_ref, rtol=1e-6, atol=0)
    # Keras' own Adam (epsilon before the bias correction) is measurably off on the tiny ones
    var = keras.Variable(init.copy(), dtype="float64")
    plain = keras.optimizers.Adam(1e-3, epsilon=1e-8)
    for g in grads:
        plain.apply_gradients([(tf.constant(g), var)])
    assert np.max(np.abs((var.numpy() - init) / moved_ref - 1)) > 1e-3


def test_supervised_loss_goes_down_on_real_records(coco_records):
    from posedual_tf.data import pipeline

    cfg = config.load("coco1k_sup", [f"data.labelled.records={coco_records}", "data.image_size=[96,128]",
                                     "data.heatmap_size=[24,32]", "model.width_multiplier=0.25", "train.batch_size=8",
                                     "train.replica_batch=0", "train.lr=0.003"])
    ds = pipeline.train_dataset(TrainDataSettings.from_config(cfg))
    batch = next(iter(ds))
    nets = builder.build_networks(cfg)
    m = methods.build_method(cfg, nets)
    m.compile(optimizer=methods.make_optimizer(cfg, 100))
    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    hist = m.fit(fixed, epochs=1, steps_per_epoch=25, verbose=0)
    first = m.train_on_batch(batch, return_dict=True)
    del hist
    batch = m.prepare(batch)                  # normalised crops and targets, as the step made them
    before = joints_mse(nets[0](batch["image"], training=True), batch["target"], batch["weight"])
    assert first["loss"] < float(joints_mse(tf.zeros_like(batch["target"]), batch["target"], batch["weight"]))
    assert float(before) < 0.8 * float(joints_mse(tf.zeros_like(batch["target"]), batch["target"], batch["weight"]))


def test_bf16_step_equals_the_float32_step_to_bf16_precision():
    """mixed_bfloat16 computes in bf16 (8 bits of mantissa) with float32 variables and outputs: one step's
    losses agree with the float32 step to bf16 rounding, far tighter than any wrong term would allow."""
    need_bfloat16()
    lab, unl = _batch(5)
    _, nets32, m32 = _method("coco1k_cons", "method.mask_joint_num=2")
    initial = [net.get_weights() for net in nets32]
    logs32 = m32.train_on_batch((lab, unl), return_dict=True)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        cfg, nets, m = _method("coco1k_cons", "train.mixed_precision=mixed_bfloat16", "method.mask_joint_num=2")
        for net, weights in zip(nets, initial):          # the float32 run's initial weights
            net.set_weights(weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert nets[0].get_layer("conv1").compute_dtype == "bfloat16"
    assert nets[0].output.dtype == "float32"
    logs = m.train_on_batch((lab, unl), return_dict=True)
    assert logs["loss"] != logs32["loss"]                                   # bf16 did compute something else
    assert logs["loss"] == pytest.approx(logs32["loss"], rel=2e-2)
    assert logs["loss_pose"] == pytest.approx(logs32["loss_pose"], rel=2e-2)


def test_finite_guard_stops_training_and_no_checkpoint_follows_a_non_finite_step(tmp_path):
    """A real fit whose 3rd batch holds a NaN: the guard records step 3 and stops the run (the loop may
    run a step or two further: the guard runs off the training thread), and the step checkpoints (every
    step) stop at step 2."""
    import keras

    from posedual_tf.callbacks import FiniteGuard, StepCheckpoint

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    x[5] = np.nan                                                    # batch 2 of size 2 -> step 3
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    epoch = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch),
                                         str(tmp_path / "ckpt"), max_to_keep=None)
    guard = FiniteGuard()
    model.fit(x, np.zeros((40, 1), np.float32), batch_size=2, epochs=1, shuffle=False, verbose=0,
              callbacks=[guard, StepCheckpoint(manager, epoch, every=1)])
    assert guard.failed_at[0] == 3 and math.isnan(guard.failed_at[1])
    assert int(model.optimizer.iterations.numpy()) < 20                  # stopped: 20 steps in the epoch
    assert [int(p.rsplit("-", 1)[1]) for p in manager.checkpoints] == [1, 2]


def test_kill_and_resume_reaches_same_final_step(tmp_path):
    workdir = tmp_path / "run"
    args = ["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={workdir}", *SMALL_DEMO]
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(workdir / "ckpt" / "checkpoint"):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before its first checkpoint: nothing was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _run(args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((workdir / "train_result.json").read_text())
    assert result["final_step"] == 3 * 3
    assert "resumed from" in again.stdout
    assert (workdir / "final" / "net1.weights.h5").exists()


def test_missing_records_is_a_one_line_error(tmp_path):
    out = _run(["-m", "posedual_tf.train", "--config", "coco1k_dual", f"--set=data.labelled.records={tmp_path}/x",
                "--set=model.pretrained=none", f"--set=workdir={tmp_path}/run"], timeout=300)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data.labelled.records: no TFRecords at") and "tfrecords_tools.coco" in last
    assert not (tmp_path / "run").exists()          # nothing written for a run that never started


def test_training_checkpoint_restores_every_weight(tmp_path):
    """Networks (BN running statistics included), optimiser step and epoch survive a checkpoint."""
    from posedual_tf import checkpoints

    cfg, nets, m = _method("coco1k_dual")
    m.optimizer.build(m.trainable_variables)
    m.train_on_batch(_batch(6), return_dict=True)            # moves weights and BN statistics
    epoch = tf.Variable(3, dtype=tf.int64)
    path = checkpoints.training_checkpoint(nets, m.optimizer, epoch).save(str(tmp_path / "ckpt" / "ckpt"))
    fresh = builder.build_networks(cfg)
    checkpoints.load_nets(fresh, str(tmp_path))
    for a, b in zip(nets, fresh):
        assert len(a.weights) == len(b.weights) > len(a.trainable_weights)
        for wa, wb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    bn = nets[0].get_layer("bn1").get_weights()
    assert not np.allclose(bn[2], 0.0)                         # running mean moved away from its init
    _, nets2, m2 = _method("coco1k_dual")
    m2.optimizer.build(m2.trainable_variables)
    epoch2 = tf.Variable(0, dtype=tf.int64)
    checkpoints.training_checkpoint(nets2, m2.optimizer, epoch2).restore(path).assert_existing_objects_matched()
    assert int(epoch2.numpy()) == 3 and int(m2.optimizer.iterations.numpy()) == 1


def test_heatmap_accuracy_reference_rule():
    from posedual_tf.methods.base import heatmap_accuracy

    target = np.zeros((2, 64, 48, 3), np.float32)
    target[:, 20, 10, 0] = 1.0      # valid joint
    target[:, 20, 1, 1] = 1.0       # gt x = 1: not valid under the reference rule
    pred = target.copy()
    acc, n = heatmap_accuracy(pred, target)
    assert float(acc) == 1.0 and float(n) == 1.0
    moved = np.zeros_like(target)
    moved[:, 20, 14, 0] = 1.0       # 4 px in x / (h / 10 = 6.4, the swapped normaliser) = 0.625 >= 0.5: a miss
    assert float(heatmap_accuracy(moved, target)[0]) == 0.0
    moved = np.zeros_like(target)
    moved[:, 20, 13, 0] = 1.0       # 3 / 6.4 = 0.47: a hit (with the unswapped 4.8 it would be 0.625)
    assert float(heatmap_accuracy(moved, target)[0]) == 1.0


def test_resuming_a_run_needs_no_initial_weights_file(tmp_path):
    workdir = tmp_path / "run"
    base = ["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={workdir}", *SMALL_DEMO,
            "--set=train.epochs=1"]
    first = _run(base, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    # not on a terminal: progress comes as lines within the epoch (a log file shows them)
    assert re.search(r"^epoch 1/1 step 3/3 loss [\d.e-]+ lr [\d.e+-]+ [\d.]+ it/s ETA ", first.stdout, re.M)
    # the initial weights are gone (or were never here): a resumed run takes everything from its checkpoint
    again = _run(base + [f"--set=model.pretrained={tmp_path}/gone.pth"], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds a finished run (3 steps: 1 epochs of 3)" in again.stdout and "model.pretrained not read" in again.stdout
    fresh = _run(base + [f"--set=workdir={tmp_path}/other", f"--set=model.pretrained={tmp_path}/gone.pth"],
                 timeout=120)
    assert fresh.returncode != 0 and "gone.pth not found" in fresh.stderr.strip().splitlines()[-1]
    # another model config in the same workdir: one line, before anything is touched
    saved = (workdir / "config.yaml").read_text()
    other = _run(base + ["--set=model.width_multiplier=0.25"], timeout=120)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1] == (
        f"error: {workdir} holds a run trained with model.width_multiplier=0.125, this config says 0.25; use another "
        "workdir (--set workdir=...) or start afresh there with --set train.resume=false")
    assert (workdir / "config.yaml").read_text() == saved


def test_corrupt_records_stop_training_with_one_line_naming_the_shard(shared, tmp_path):
    from tests.conftest import records_with_a_bad_image

    prefix, lost = records_with_a_bad_image(shared, tmp_path, 2)
    base = ["-m", "posedual_tf.train", "--config", "coco1k_sup", f"--set=workdir={tmp_path}/run",
            f"--set=data.labelled.records={prefix}", "--set=data.val.records=", "--set=model.pretrained=none",
            "--set=data.labelled_sampling=permutation", "--set=train.steps_per_epoch=0", "--set=train.epochs=1",
            "--set=train.batch_size=4", *TINY_SETS]
    out = _run(base, timeout=600)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    import re

    bad = re.match(r"error: (\d+) of (\d+) people read so far failed to parse or decode", last)
    # the bad image's people fail one by one (permutation sampling decodes each person), and the parallel map and
    # the prefetch read ahead, so the count when training stops is any number from 1 up, never 0
    assert bad and 1 <= int(bad.group(1)) <= int(bad.group(2)), last
    assert f"worst shard: {prefix}-00000-of-00001.tfrecord" in last
    # below the threshold: training goes on, and the count is in the summary and the result
    out = _run(base + [f"--set=workdir={tmp_path}/run2", "--set=data.max_corrupt_fraction=0.5"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "run2" / "train_result.json").read_text())
    seen = result["corrupt_records"]["by_stream"]["labelled"]
    assert seen >= lost           # the whole epoch was read; what the prefetch read ahead of it counts too
    assert f"warning: {seen} training records were skipped" in out.stdout


def test_saving_weights_never_replaces_a_folder_of_other_files(tmp_path):
    from posedual_tf import checkpoints

    cfg = config.load("coco1k_sup", TINY)
    nets = builder.build_networks(cfg)
    target = tmp_path / "best"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"best: exists and was not written by posedual_tf; not replaced"):
        checkpoints.save_nets(nets, str(target))
    assert (target / "notes.txt").read_text() == "mine"
    checkpoints.save_nets(nets, str(tmp_path / "final"))
    checkpoints.save_nets(nets, str(tmp_path / "final"))           # an earlier save is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "final"]
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == [".posedual_tf.json", "net1.weights.h5"]
    # the best weights are saved again at each improvement, with their best.json
    for perf in (0.1, 0.2):
        checkpoints.save_nets(nets, str(tmp_path / "kept"), extra={"best.json": {"perf": perf}})
    assert json.loads((tmp_path / "kept" / "best.json").read_text()) == {"perf": 0.2}


def _latest_step(workdir) -> int:
    try:
        text = (workdir / "ckpt" / "checkpoint").read_text()
    except OSError:
        return -1
    return int(text.split('model_checkpoint_path: "ckpt-')[1].split('"')[0])


def test_kill_at_a_mid_epoch_step_resumes_to_the_same_weights(tmp_path):
    """kill -9 right after a mid-epoch checkpoint; the resumed run (op determinism on) ends with the
    weights of an uninterrupted run."""
    import h5py

    steps = 6
    sets = [*SMALL_DEMO, f"--set=train.steps_per_epoch={steps}", "--set=train.epochs=3",
            "--set=train.checkpoint_every_steps=4", "--set=train.deterministic=true"]

    def args(workdir):
        return ["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={workdir}", *sets]

    whole = _run(args(tmp_path / "whole"), timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, *args(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and not (_latest_step(cut) > 0 and
                                                                  _latest_step(cut) % steps):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _latest_step(cut)
    assert killed_at % steps, f"no mid-epoch checkpoint caught before the run ended (last: {killed_at})"
    again = _run(args(cut), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"step {killed_at % steps} of {steps}; global step {killed_at})" in again.stdout
    assert json.loads((cut / "train_result.json").read_text())["final_step"] == 3 * steps
    with h5py.File(tmp_path / "whole" / "final" / "net1.weights.h5") as a, \
            h5py.File(cut / "final" / "net1.weights.h5") as b:
        names = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert len(names) > 50
        for n in names:
            np.testing.assert_array_equal(a[n][()], b[n][()], err_msg=n)


def test_an_evaluated_set_without_ground_truth_stops_before_training(tmp_path):
    from posedual_tf import cli, demo, task

    cfg = config.load("demo_cons", [f"workdir={tmp_path}/run", f"data.val.annotations={__file__}",
                                    f"data.unlabelled_eval.annotations={tmp_path}/no.json"])
    demo.prepare_data(cfg)
    with pytest.raises(task.MissingGroundTruthError) as e:
        task.PoseTask(cfg).check()
    line = cli.one_line(e.value)
    assert line.startswith("data.unlabelled_eval.annotations: ground-truth file not found") and "no.json" in line
    task.PoseTask(config.load("demo_cons", [f"workdir={tmp_path}/run", "data.unlabelled_eval.records=''",
                                            f"data.val.annotations={__file__}"])).check()   # nothing evaluated


def test_learning_rate_steps_at_the_start_of_each_milestone_epoch():
    """The reference's MultiStepLR (stepped once per epoch): lr x 0.1 from epoch 20 and again from 25
    (0-based epochs), whatever the number of steps per epoch."""
    cfg = config.load("coco1k_dual", ["train.lr=0.001", "train.lr_step=[20,25]", "train.lr_factor=0.1"])
    opt = methods.make_optimizer(cfg, 7)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    want = {0: 1e-3, 19 * 7 + 6: 1e-3, 20 * 7: 1e-4, 24 * 7 + 6: 1e-4, 25 * 7: 1e-5, 40 * 7: 1e-5}
    for step, lr in want.items():
        assert float(schedule(step)) == pytest.approx(lr, rel=1e-6), step


def test_steps_per_execution_trains_the_same_posecons_steps():
    """train.steps_per_execution=2 compiles two PoseCons steps per call of the training function: the same
    draws (the step's RNG follows the optimizer step inside the loop), the same weights as one step per
    call, and the step counter at 4. Settings the callbacks could not see are one-line errors."""
    with pytest.raises(config.ConfigError, match=r"train\.log_every: expected a multiple of "
                                                 r"train\.steps_per_execution \(4\)"):
        config.load("coco1k_cons", ["train.steps_per_execution=4", "train.log_every=50"])
    from posedual_tf.task import PoseTask
    from tests.conftest import LABELLED_IDS

    batches = [_batch(seed) for seed in range(4)]
    ds = tf.data.Dataset.from_tensor_slices(tuple(
        {k: np.stack([b[i][k] for b in batches]) for k in batches[0][i]} for i in range(2)))
    weights = []
    for per_call in (1, 2):
        keras.utils.set_random_seed(0)
        cfg = config.load("coco1k_cons", [*TINY, f"train.steps_per_execution={per_call}", "train.log_every=2",
                                           "train.image_summary_every=2", "train.checkpoint_every_steps=2"])
        built = PoseTask(cfg).build_model(initial_weights=False, steps_per_epoch=10, labelled_ids=LABELLED_IDS)
        nets, m = built.nets, built.method
        assert m.steps_per_execution == per_call
        m.fit(ds.repeat(), epochs=1, steps_per_epoch=4, verbose=0, shuffle=False)
        assert int(m.optimizer.iterations.numpy()) == 4
        weights.append([w.numpy() for net in nets for w in net.weights])
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)
    initial = [w.numpy() for net in builder.build_networks(config.load("coco1k_cons", TINY)) for w in net.weights]
    assert max(np.abs(a - b).max() for a, b in zip(initial, weights[1])) > 1e-4     # it did train


def test_steps_per_execution_that_splits_an_epoch_is_a_one_line_error(tmp_path):
    out = _run(["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={tmp_path}/run", *SMALL_DEMO,
                "--set=train.steps_per_execution=2", "--set=train.log_every=2", "--set=train.image_summary_every=2",
                "--set=train.checkpoint_every_steps=2"], timeout=300)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last == ("error: train.steps_per_execution=2: an epoch is 3 steps, not a multiple of it (Keras would run "
                    "past the epoch's end); set train.steps_per_epoch to a multiple, or train.steps_per_execution "
                    "to a divisor of 3"), last
    assert not (tmp_path / "run" / "ckpt").exists()
