"""The reference's per-GPU groups on any device count (``train.replica_batch``) and independent draws per
replica and group (``train.shared_draws`` off, as the reference's DDP ranks drew)."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import config
from posedual_tf.models import bn_groups
from tests.conftest import run_python, tiny_batch, tiny_method

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_groups_per_replica_and_the_one_line_error():
    assert bn_groups.groups_per_replica(128, 32, 1) == 4
    assert bn_groups.groups_per_replica(128, 32, 2) == 2
    assert bn_groups.groups_per_replica(128, 32, 4) == 1
    assert bn_groups.groups_per_replica(32, 0, 4) == 1
    with pytest.raises(ValueError, match=r"train.replica_batch=32: train.batch_size=32 over 4 replicas is 8 "
                                         r"people per device.*multiple of 128.*divisor of 8"):
        bn_groups.groups_per_replica(32, 32, 4)
    with pytest.raises(ValueError, match=r"train.replica_batch=32: train.batch_size=8 over 1 replicas is 8 people per "
                                         r"device, not a multiple of 32; set train.batch_size to a multiple of 32"):
        bn_groups.groups_per_replica(8, 32, 1)          # --set train.batch_size=8 on a paper config
    with pytest.raises(config.ConfigError, match="train.replica_batch: expected an int >= 0"):
        config.load("demo_dual", ["train.replica_batch=-1"])
    with pytest.raises(config.ConfigError, match="train.replica_batch: expected 0 or train.batch_size with "
                                                 "method.consistency_pair=same"):
        config.load("demo_dual", ["train.replica_batch=8", "method.consistency_pair=same", "method.paths=[JC]"])


def test_paper_configs_set_the_reference_gpu_batch():
    """Every paper config names its per-GPU batch; the 4-GPU MultiAugs runs are 4 groups of 32."""
    for name in config.available():
        cfg = config.load(name)
        if name.startswith("demo"):
            assert cfg.train.replica_batch == 0, name
            continue
        assert cfg.train.replica_batch > 0 and cfg.train.batch_size % cfg.train.replica_batch == 0, name
        assert bn_groups.groups_per_replica(cfg.train.batch_size, cfg.train.replica_batch, 1) >= 1
    assert config.load("coco1k_dual_multiaugs").train.replica_batch == 32
    assert config.load("coco1k_dual_multiaugs").train.batch_size == 128
    assert config.load("coco1k_dual").train.replica_batch == 32 == config.load("coco1k_dual").train.batch_size
    assert config.load("mpii_aic_dual_multiaugs_hrnet_w32").train.replica_batch == 16


def test_group_batch_norm_normalises_each_group_and_keeps_the_first_groups_statistics():
    """4 groups of 2 in one call: each group's output is the group alone through the layer; the running
    statistics are those of a step on the first group only (DDP's rank 0)."""
    from posedual_tf.models.layers import BatchNorm

    rng = np.random.default_rng(1)
    x = (rng.normal(size=(8, 3, 2, 4)) * np.arange(1, 9)[:, None, None, None]).astype("float32")
    grouped, alone = BatchNorm(momentum=0.9, epsilon=1e-5), BatchNorm(momentum=0.9, epsilon=1e-5)
    grouped.build(x.shape)
    alone.build(x.shape)
    with bn_groups.replica_groups(4, 2):
        y = grouped(x, training=True).numpy()
    want = [alone(x[g * 2:(g + 1) * 2], training=True).numpy() for g in range(4)]
    alone.moving_mean.assign(np.zeros(4, "float32"))
    alone.moving_variance.assign(np.ones(4, "float32"))
    alone(x[:2], training=True)
    np.testing.assert_allclose(y, np.concatenate(want), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grouped.moving_mean.numpy(), alone.moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grouped.moving_variance.numpy(), alone.moving_variance.numpy(), rtol=1e-6)
    assert not np.allclose(y, alone(x, training=True).numpy(), atol=1e-2)      # one batch of 8 differs


def _group_views(*extra):
    """The hard views of one step on 1 device with 2 groups whose people are the same images."""
    cfg, nets, m = tiny_method("demo_multiaugs", "train.batch_size=4", "train.replica_batch=2", *extra)
    _, unl = tiny_batch(3, 2)
    unl = {k: np.concatenate([v, v]) for k, v in unl.items()}           # group 1 = group 0's people
    teachers = [tf.constant(np.random.default_rng(4).uniform(size=(4, 24, 16, 24)).astype("float32"))] * 2
    teachers = [tf.concat([t[:2], t[:2]], 0) for t in teachers]
    views, _ = m._views(m.step_rng, {k: tf.constant(v) for k, v in unl.items()}, teachers)
    return [[v.numpy() for v in per_net] for per_net in views]


def test_one_device_groups_draw_independently_unless_shared():
    views = _group_views()
    for per_net in views:
        for v in per_net:                                     # every path of every network
            assert not np.array_equal(v[:2], v[2:])           # same people, other draws
    for per_net in _group_views("train.shared_draws=true"):
        for v in per_net:
            np.testing.assert_array_equal(v[:2], v[2:])


DRAWS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, ".")
    from posedual_tf import config, methods
    from posedual_tf.models import builder
    out = {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name, sets in (("multiaugs", []), ("shared", ["train.shared_draws=true"]), ("dual", ["method.paths=[]"]),
                       ("groups", ["train.batch_size=8", "train.replica_batch=2"])):
        cfg = config.load("demo_multiaugs", ["model.width_multiplier=0.125"] + sets)
        with strategy.scope():
            m = methods.build_method(cfg, builder.build_networks(cfg))
            m.compile(optimizer=methods.make_optimizer(cfg, 10))
        draws = strategy.run(lambda: tf.stack([m.step_rng(g).uniform([3]) for g in range(m.groups)]))
        out[name] = [g for v in strategy.experimental_local_results(draws) for g in v.numpy().tolist()]
    import tempfile
    from posedual_tf import training
    cfg = config.load("demo_dual", ["train.replica_batch=16", "workdir=" + tempfile.mkdtemp() + "/run"])
    try:
        training.run(cfg, progress="none", strategy=strategy)
        out["error"] = None
    except config.ConfigError as e:
        out["error"] = str(e)
    print(json.dumps(out))
""")


def test_two_replicas_draw_independently_unless_shared():
    """2 logical CPU devices: each replica (and each group of each replica) draws its own augmentation,
    for MultiAugs as for PoseDual; train.shared_draws gives every replica the same draws. A group size
    that the replicas' shares cannot hold is a one-line error before training."""
    out = run_python(["-c", DRAWS], timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(res["multiaugs"]) == 2 and res["multiaugs"][0] != res["multiaugs"][1]
    assert res["dual"][0] != res["dual"][1]
    assert res["shared"][0] == res["shared"][1]
    assert len(res["groups"]) == 4 and len({tuple(g) for g in res["groups"]}) == 4      # 2 replicas x 2 groups
    # a per-GPU group that a replica's share cannot hold stops the run before it starts, in one line
    assert res["error"].startswith("train.replica_batch=16: train.batch_size=16 over 2 replicas is 8 people per "
                                   "device"), res["error"]


EQUAL = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)
    sys.path.insert(0, ".")
    from posedual_tf import config, methods
    from posedual_tf.models import builder
    from tests.conftest import TINY, LABELLED_IDS, tiny_batch
    SETS = TINY + ["train.batch_size=8", "train.replica_batch=2", "train.pass_schedule=" + sys.argv[1],
                   "method.paths=[JOCO, JCCM]"]
    cfg = config.load("coco1k_dual_multiaugs", SETS)
    lab, unl = tiny_batch(5, 8)

    def build():
        nets = builder.build_networks(cfg)
        m = methods.build_method(cfg, nets, labelled_ids=LABELLED_IDS)
        m.compile(optimizer=methods.make_optimizer(cfg, 10))
        return nets, m

    def stats(nets):
        return [v.numpy() for n in nets for v in n.non_trainable_variables]

    nets1, m1 = build()
    initial = [n.get_weights() for n in nets1]
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    with one.scope():
        nets1, m1 = build()
        for n, w in zip(nets1, initial):
            n.set_weights(w)
        out1, pairs1 = one.run(tf.function(lambda: m1.gradients(lab, unl, m1.step_rng)))
    four = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(4)])
    with four.scope():
        nets4, m4 = build()
        for n, w in zip(nets4, initial):
            n.set_weights(w)
    part = lambda d, ctx: {k: v[2 * ctx.replica_id_in_sync_group:2 * ctx.replica_id_in_sync_group + 2] for k, v in d.items()}
    lab4 = four.experimental_distribute_values_from_function(lambda ctx: part(lab, ctx))
    unl4 = four.experimental_distribute_values_from_function(lambda ctx: part(unl, ctx))

    @tf.function
    def step4(lab, unl):
        def fn(lab, unl):
            out, pairs = m4.gradients(lab, unl, m4.step_rng)
            ctx = tf.distribute.get_replica_context()
            return out["loss"], ctx.all_reduce("sum", [g for g, _ in pairs])
        return four.run(fn, args=(lab, unl))
    loss4, grads4 = step4(lab4, unl4)
    losses4 = [float(x) for x in four.experimental_local_results(loss4)]
    grads4 = [four.experimental_local_results(g)[0].numpy() for g in grads4]
    grads1 = [g.numpy() for g, _ in pairs1]
    rel = lambda a, b: float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))
    print(json.dumps({"groups1": m1.groups, "loss1": float(out1["loss"]), "loss4": float(np.mean(losses4)),
                      "losses4": losses4,
                      "grad_rel": max(rel(a, b) for a, b in zip(grads4, grads1)),
                      "grad_norm_rel": max(float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-30))
                                           for a, b in zip(grads4, grads1)),
                      "stats_rel": max(rel(a, b) for a, b in zip(stats(nets4), stats(nets1))),
                      "stats_moved": max(float(np.abs(a - b).max()) for a, b in zip(stats(nets1), [
                          w for n, ws in zip(nets1, initial) for w, v in zip(ws, n.weights) if not v.trainable]))}))
""")


def test_one_device_with_four_groups_equals_four_replicas_of_one_group():
    """coco1k_dual_multiaugs at tiny size (its composite paths JOCO and JCCM, which hold all four of its ops:
    JO's source people, CutMix's partners and JC's joints are drawn per group; batch 8 in groups of 2): one device
    holding 4 groups and 4 logical devices holding one group each run the same step: the loss, every
    gradient (summed across the replicas, as the optimizer sees it; relative to the tensor's norm) and
    every BatchNorm running statistic agree within 1e-5 relative. The fused pass schedule is used: its
    per-group BatchNorm calls and deferred teacher statistics are the most involved path (the others
    share the same per-group code); measured 3.8e-6 on the gradients, 0 on the statistics."""
    out = run_python(["-c", EQUAL, "fused"], timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["groups1"] == 4
    assert len(set(res["losses4"])) == 4                       # the replicas' groups are different people
    assert res["loss4"] == pytest.approx(res["loss1"], rel=1e-5)
    assert res["grad_norm_rel"] < 1e-5, res
    assert res["stats_moved"] > 1e-3                           # the step did update the running statistics
    assert res["stats_rel"] < 1e-5, res
