"""Several devices and clusters on CPU stand-ins: two logical devices under MirroredStrategy (the step, a
float16 overflow on one replica), workers and a chief on 127.0.0.1 (who trains, who writes), TF_CONFIG."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import SMALL_DEMO, free_ports, run_python as _run


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, ".")
    from posedual_tf import config, methods
    from posedual_tf.methods.base import joints_mse
    from posedual_tf.models import builder
    from tests.conftest import TINY, H, W, HM_H, HM_W
    cfg = config.load("coco1k_sup", TINY)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(8, H, W, 3)).astype("float32"),
             "target": rng.uniform(size=(8, HM_H, HM_W, 24)).astype("float32"),
             "weight": (rng.uniform(size=(8, 24)) > 0.3).astype("float32")}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        nets = builder.build_networks(cfg)
        m = methods.build_method(cfg, nets)
        m.compile(optimizer=methods.make_optimizer(cfg, 10))
    initial = nets[0].get_weights()
    hist = m.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    # by hand on one device: each replica's half is its own BatchNorm batch; the step's gradient is the
    # mean of the halves' gradients (summed across replicas of loss / 2); one torch-exact Adam step
    ref = builder.build_networks(cfg)[0]
    ref.set_weights(initial)
    losses, grads = [], []
    for half in (slice(0, 4), slice(4, 8)):
        with tf.GradientTape() as tape:
            loss = joints_mse(ref(batch["image"][half], training=True), batch["target"][half], batch["weight"][half])
        losses.append(float(loss))
        grads.append(tape.gradient(loss, ref.trainable_variables))
    opt = methods.make_optimizer(cfg, 10)
    opt.apply_gradients(zip([0.5 * (a + b) for a, b in zip(*grads)], ref.trainable_variables))
    trained = {v.path: v.numpy() for v in nets[0].trainable_variables}
    worst = max(float(np.abs(trained[v.path] - v.numpy()).max() / (np.abs(v.numpy() - w0).max() + 1e-12))
                for v, w0 in zip(ref.trainable_variables, [initial[i] for i, w in enumerate(nets[0].weights)
                                                           if w.trainable]))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": hist.history["loss"][0],
                      "hand_loss": float(np.mean(losses)), "worst_update_error": worst}))
""")


def test_two_device_mirrored_step_equals_the_per_replica_hand_computation():
    out = _run(["-c", MIRRORED], timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["replicas"] == 2
    # the logged loss is the mean of the replicas' losses, each over its own BatchNorm batch of 4
    assert res["loss"] == pytest.approx(res["hand_loss"], rel=1e-5)
    # the replicas' gradients are combined into their mean before the one optimizer step: every weight
    # moves as the hand step moves it (error relative to the size of that variable's update)
    assert res["worst_update_error"] < 1e-3


OVERFLOW = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, ".")
    from posedual_tf import config, methods
    from posedual_tf.models import builder
    from tests.conftest import TINY, H, W, HM_H, HM_W
    keras.mixed_precision.set_global_policy("mixed_float16")
    cfg = config.load("coco1k_sup", TINY + ["train.mixed_precision=mixed_float16"])
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(8, H, W, 3)).astype("float32"),
             "target": rng.uniform(size=(8, HM_H, HM_W, 24)).astype("float32"),
             "weight": np.ones((8, 24), "float32")}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        nets = builder.build_networks(cfg)
        m = methods.build_method(cfg, nets)
        opt = methods.make_optimizer(cfg, 10)
        m.compile(optimizer=opt)
        opt.build(m.trainable_variables)
    initial = [v.numpy().copy() for v in nets[0].trainable_variables]
    scale0 = float(opt.dynamic_scale.numpy())
    bad = dict(batch, image=batch["image"].copy())
    bad["image"][4:] = 1e5                          # replica 1's half overflows float16; replica 0's is fine
    m.fit(tf.data.Dataset.from_tensors(bad), epochs=1, verbose=0)
    after = [v.numpy() for v in nets[0].trainable_variables]
    res = {"stats_finite": all(bool(np.isfinite(w).all()) for w in nets[0].get_weights()),"replicas": strategy.num_replicas_in_sync, "scale0": scale0,
           "scale1": float(opt.dynamic_scale.numpy()), "step1": int(opt.iterations.numpy()),
           "finite": all(bool(np.isfinite(w).all()) for w in after),
           "unchanged": all(np.array_equal(a, b) for a, b in zip(initial, after))}
    m.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    res["step2"] = int(opt.iterations.numpy())
    res["moved"] = not all(np.array_equal(a, v.numpy()) for a, v in zip(initial, nets[0].trainable_variables))
    res["finite2"] = all(bool(np.isfinite(w).all()) for w in nets[0].get_weights())
    print(json.dumps(res))
""")


def test_float16_overflow_on_one_replica_skips_the_step_on_both():
    """2 logical CPU devices, mixed_float16: replica 1's gradients overflow, replica 0's do not. The step
    is skipped on both (every weight finite and unchanged), the loss scale halves, and the global step
    still counts the batch; the next, finite step trains."""
    out = _run(["-c", OVERFLOW], timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["replicas"] == 2
    assert res["finite"] and res["unchanged"], res          # trainable weights: the update was skipped
    assert res["stats_finite"], res
    assert res["scale1"] == res["scale0"] / 2 and res["step1"] == 1
    assert res["moved"] and res["finite2"] and res["step2"] == 2


def _two_workers(args_of, roles=("worker", "worker"), env_of=lambda i: {}) -> list[str]:
    """Run ``args_of(i)`` as the tasks ``roles`` (chief and/or workers) of a TF_CONFIG cluster on
    127.0.0.1; their stdouts."""
    ports = free_ports(2)
    cluster: dict[str, list[str]] = {}
    tasks = []
    for role, port in zip(roles, ports):
        tasks.append({"type": role, "index": len(cluster.get(role, []))})
        cluster.setdefault(role, []).append(f"127.0.0.1:{port}")
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": tasks[i]}), **env_of(i))
        procs.append(subprocess.Popen([sys.executable, *args_of(i)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se[-3000:]
    return [so for so, _ in outs]


def test_multi_worker_two_processes_on_localhost(tmp_path):
    """Two workers and no chief: worker 0 is the chief; worker 1 trains beside it and writes nothing."""
    _two_workers(lambda i: ["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={tmp_path}/w{i}",
                            "--set=train.strategy=multi_worker", *SMALL_DEMO, "--set=train.epochs=1"])
    result = json.loads((tmp_path / "w0" / "train_result.json").read_text())
    assert result["final_step"] == 3 and result["num_replicas"] == 2
    assert result["strategy"] == "multi_worker"
    assert not (tmp_path / "w1" / "train_result.json").exists() and not (tmp_path / "w1" / "ckpt").exists()


def test_chief_and_worker_train_together_and_only_the_chief_writes(tmp_path):
    """TF_CONFIG with a chief and a worker on 127.0.0.1, one shared workdir, train.strategy=auto: one
    2-replica run; the workdir holds the chief's files only, and the worker's scratch folder is gone."""
    workdir = tmp_path / "run"
    sets = [a.replace("--set=", "") for a in SMALL_DEMO] + ["train.epochs=1", f"workdir={workdir}"]
    prep = _run(["-c", f"from posedual_tf import config, demo; demo.prepare_data(config.load('demo_sup', {sets!r}))"],
                timeout=300)
    assert prep.returncode == 0, prep.stderr[-2000:]
    before = sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*"))
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for d in scratch:
        d.mkdir()
    outs = _two_workers(lambda i: ["-m", "posedual_tf.train", "--config", "demo_sup",
                                   *[f"--set={x}" for x in sets]],
                        roles=("chief", "worker"), env_of=lambda i: {"TMPDIR": str(scratch[i])})
    result = json.loads((workdir / "train_result.json").read_text())
    assert result["num_replicas"] == 2 and result["strategy"] == "multi_worker"
    assert result["final_step"] == 3
    assert "its chief writes" in outs[1] and "workdir:" in outs[0]
    assert list(scratch[1].iterdir()) == []                     # the worker removed its scratch folder
    # each file the run wrote was written once, by the chief (no worker's file beside it)
    written = sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.is_file()
                     and p.relative_to(workdir).as_posix() not in before)
    assert "config.yaml" in written and "final/net1.weights.h5" in written
    assert not any("worker" in w or "posedual-worker" in w for w in written)
    # one event file per run, one writer each: the run's, and its one head's (net1: demo_sup has one network)
    events = sorted(w.rsplit("/", 1)[0] for w in written if w.startswith("tb/"))
    assert events == ["tb/demo_sup", "tb/demo_sup/net1"], events


SUBSET_WORKER = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from posedual_tf import config
    from posedual_tf.data import pipeline
    from posedual_tf.data.settings import TrainDataSettings
    cfg = config.load("coco1k_sup", [f"data.labelled.records={sys.argv[1]}", "data.labelled.max_instances=7",
                                     "data.labelled_sampling=permutation", "train.steps_per_epoch=0",
                                     "train.batch_size=2", "data.image_size=[64,64]", "data.heatmap_size=[16,16]"])
    made = {}
    def dataset_fn(ctx):
        made["steps"] = pipeline.epoch_steps(TrainDataSettings.from_config(cfg))[0]
        return pipeline.train_dataset(TrainDataSettings.from_config(cfg), input_context=ctx)
    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    people = []
    for _ in range(made["steps"]):            # one epoch
        batch = next(batches)
        for t in strategy.experimental_local_results(batch["person"]):
            people += t.numpy().tolist()
    print(json.dumps({"people": people, "steps": made["steps"]}))
""")


def test_subset_people_are_split_by_person_across_two_workers_on_localhost(coco_records):
    seen = [json.loads(out.strip().splitlines()[-1]) for out in _two_workers(lambda i: ["-c", SUBSET_WORKER,
                                                                                           coco_records])]
    assert seen[0]["steps"] == seen[1]["steps"] == 4
    a, b = seen[0]["people"], seen[1]["people"]
    assert len(a) == len(b) == 4                              # equal, full per-worker batches
    assert set(a) | set(b) == set(range(7))                   # the first 7 people in file order, all of them
    assert len(set(a) & set(b)) <= 1                          # disjoint but for the one repeat that fills the epoch


@pytest.mark.parametrize("raw", ["{not json", '{"cluster": ["a"]}', '["x"]'])
def test_chief_malformed_tf_config_is_a_one_line_error(monkeypatch, raw):
    from posedual_tf import cli, distribution

    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ValueError) as err:
        distribution.make_strategy("auto")
    line = cli.one_line(err.value)
    assert line.startswith("TF_CONFIG: expected JSON like {\"cluster\"") and "\n" not in line


def test_chief_counts_every_task_of_tf_config(monkeypatch):
    from posedual_tf import distribution

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {}}')
    assert distribution.cluster_tasks() == 3
    monkeypatch.delenv("TF_CONFIG")
    assert distribution.cluster_tasks() == 0


WORKER_DRAWS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    sys.path.insert(0, ".")
    from posedual_tf import config, methods
    from posedual_tf.models import builder
    cfg = config.load("demo_multiaugs", ["model.width_multiplier=0.125"])
    with strategy.scope():
        m = methods.build_method(cfg, builder.build_networks(cfg))
        m.compile(optimizer=methods.make_optimizer(cfg, 10))
    draws = strategy.run(lambda: m.step_rng(0).uniform([3]))
    ctx_ids = strategy.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group)
    print(json.dumps({"draws": strategy.experimental_local_results(draws)[0].numpy().tolist(),
                      "replica": int(strategy.experimental_local_results(ctx_ids)[0])}))
""")


def test_two_workers_draw_independently():
    """MultiWorkerMirroredStrategy on 127.0.0.1: each worker's replica has its own id across the cluster,
    so the two draw different augmentations (as the reference's DDP processes)."""
    outs = _two_workers(lambda i: ["-c", WORKER_DRAWS])
    res = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    assert sorted(r["replica"] for r in res) == [0, 1]
    assert res[0]["draws"] != res[1]["draws"]
