"""XLA on the CPU backend (the same op registry as XLA on GPU) stands in for ``train.jit_compile`` on a GPU:
each method's step compiles, and gives the non-XLA step's losses, gradients and BatchNorm statistics.

JC and JO place their boxes at the argmax of a teacher's heatmaps. A random network's maps are nearly
flat, so XLA's other rounding (1e-6) can move an argmax by a pixel and a box by 4 px; the step tests
therefore use the paths that place no box (CO, CM, MU, the affine), and every path's ops are compared
under XLA on teacher maps with clear peaks (:func:`test_xla_hard_views_equal_the_views_without_xla`)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf.data import augment
from posedual_tf.methods.base import joints_mse
from tests.conftest import assert_close, grads_by_position, moving_stats, tiny_batch, tiny_method, twin_methods


def _supervised_gradients(m, lab):
    with tf.GradientTape() as tape:
        loss = joints_mse(m.nets[0](lab["image"], training=True), lab["target"], lab["weight"])
    variables = m.trainable_variables
    return {"loss": loss}, list(zip(tape.gradient(loss, variables), variables))


def _gradients_agree(want, got, key):
    """Equal to 1 % of the tensor's norm. Not closer: XLA fuses BatchNorm + ReLU with other rounding, a
    unit whose input lies within rounding of zero passes its gradient in one step and not in the other,
    and these flips add up towards the input (measured at 96x64, width 0.125, batch 4: 1e-6 relative
    at the final layer, up to 4e-3 at conv1). A wrong or missing term moves a gradient by far more."""
    assert np.isfinite(got).all(), key
    assert np.linalg.norm(got - want) <= 0.01 * np.linalg.norm(want), (key, np.linalg.norm(got - want) /
                                                                         np.linalg.norm(want))


@pytest.mark.parametrize("name, extra", [
    ("coco1k_sup", ()),
    ("coco1k_cons", ("method.mask_joint_num=0",)),                            # the affine hard view
    ("coco1k_dual_multiaugs", ("method.paths=[CO, CM, MU, A60]",)),            # 4 paths, MixUp's Gamma draws
])
def test_xla_step_equals_the_step_without_xla(name, extra):
    (nets_a, a), (nets_b, b) = twin_methods(name, extra, seed=3)
    lab, unl = tiny_batch(5)

    def step(m, nets):
        if name.endswith("_sup"):
            out, pairs = _supervised_gradients(m, lab)
        else:
            out, pairs = m.gradients(lab, unl, m.step_rng)          # seeded at run time, from the step
        grads = {f"{n}:{path}": g for (n, path), g in grads_by_position(nets, pairs).items()}
        return {k: v for k, v in out.items() if k in ("loss", "loss_pose", "loss_cons", "cons_paths")}, grads

    out_a, grads_a = tf.function(lambda: step(a, nets_a))()
    out_b, grads_b = tf.function(lambda: step(b, nets_b), jit_compile=True)()
    for key in ("loss", "loss_pose", "loss_cons"):
        if key in out_a:
            assert_close(out_a[key], out_b[key], key, rtol=1e-4, atol=0)
    for p, (ca, cb) in enumerate(zip(out_a.get("cons_paths", []), out_b.get("cons_paths", []))):
        assert_close(ca, cb, f"consistency of path {p}", rtol=1e-4, atol=0)
    assert set(grads_a) == set(grads_b) and len(grads_a) == len(a.trainable_variables)
    for key, g in grads_a.items():
        assert g is not None, key
        _gradients_agree(g.numpy(), grads_b[key].numpy(), key)
    # the step's whole gradient (every tensor in one vector) within 2e-3 relative: measured 6e-7 (supervised,
    # PoseCons) and 2.2e-5 (MultiAugs) on one CPU, and 4.5e-4 (supervised) on an AVX-512 Zen 4, where XLA's
    # rounding flips one ReLU unit of 49,152 behind the last BatchNorm and BatchNorm's backward pass spreads
    # that unit's share to every tensor above it (a term wrong in one tensor fails the 1 % bound above).
    keys = sorted(grads_a)
    whole_a = np.concatenate([grads_a[k].numpy().ravel() for k in keys])
    whole_b = np.concatenate([grads_b[k].numpy().ravel() for k in keys])
    assert np.linalg.norm(whole_b - whole_a) <= 2e-3 * np.linalg.norm(whole_a)
    for i, (x, y) in enumerate(zip(moving_stats(nets_a), moving_stats(nets_b))):
        # 1e-5 of the largest statistic (at least 1): a unit whose input XLA rounds across zero moves the
        # small statistics behind it by ~1e-6 (measured 1.6e-6 on a mean of 0.0036); a missed update is >1e-2
        assert_close(x, y, f"moving statistic {i}", rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(x, y) for x, y in zip(moving_stats(nets_b), moving_stats(tiny_method(name, *extra)[1])))


def test_xla_hard_views_equal_the_views_without_xla():
    """Every op of every path (JC, JO, CO, CM, MU and the composites, dual: each net cut at the other's
    joints) and the batch affine, compiled with XLA, on teacher maps with one clear peak per joint."""
    from posedual_tf import config
    from posedual_tf.data import view_paths

    cfg = config.load("coco1k_dual_multiaugs", ["data.image_size=[48,64]", "data.heatmap_size=[12,16]",
                                                "method.paths=[JC, JO, JOCO, JCCM, CO, CM, MU, RA+JC]",
                                                "method.mask_joint_num=5"])
    rng = np.random.default_rng(2)
    b = 4
    unl = {"image": tf.constant(rng.normal(size=(b, 64, 48, 3)).astype(np.float32))}
    unl["image_RA"] = tf.reverse(unl["image"], [1])
    teachers = []
    for _ in range(2):
        maps = rng.uniform(0, 0.2, size=(b, 16, 12, 24)).astype(np.float32)
        for i in range(b):
            for j in range(24):
                maps[i, rng.integers(16), rng.integers(12), j] = 1.0        # one peak per map
        teachers.append(tf.constant(maps))

    seed = tf.Variable([5, 3], dtype=tf.int64)          # known at run time only, as a step's seed is

    def views():
        v, t = view_paths.build_views(view_paths.ViewSettings.from_config(cfg), augment.StatelessRng(seed), unl, teachers[::-1], teachers)
        return v, t

    plain, target_plain = tf.function(views)()
    xla, target_xla = tf.function(views, jit_compile=True)()
    for p, (vp, vx) in enumerate(zip(plain, xla)):
        for n in range(2):
            # 1e-4: XLA's sin/log round a normal draw's last bit otherwise, and the batch affine moves
            # its sample points by that (one pixel in 36864 off by 3e-5, measured); a box elsewhere is O(1)
            assert_close(vp[n], vx[n], f"path {p} net {n + 1}", rtol=1e-4, atol=1e-4)
            assert not np.array_equal(vp[n].numpy(), unl["image"].numpy())
    for n in range(2):
        assert_close(target_plain[n], target_xla[n], f"target {n + 1}", rtol=1e-5, atol=1e-6)


def test_xla_draws_equal_the_draws_without_xla_for_a_seed_known_at_run_time():
    """XLA compiles TensorFlow's stateless float draws into other floats when the seed is a run-time value
    (a step's seed comes from the optimizer's step count): StatelessRng makes its floats from the
    generator's words itself, so both draw alike. Its uniform floats are TensorFlow's kernel's, bit for
    bit; its normals are the kernel's Box-Muller to float rounding."""
    seed = tf.Variable([7, 1], dtype=tf.int64)

    def draws():
        rng = augment.StatelessRng(seed)
        return {"uniform": rng.uniform([5, 3]), "range": rng.uniform([7], -2.0, 3.0), "normal": rng.normal([9]),
                "int": rng.uniform([6], 0, 40, dtype=tf.int32), "gamma": rng.gamma([4], 0.2)}

    plain, xla = tf.function(draws)(), tf.function(draws, jit_compile=True)()
    for key in plain:
        assert_close(plain[key], xla[key], key, rtol=1e-6, atol=1e-7)
    rng = augment.StatelessRng(seed)
    kernel = {"uniform": tf.random.stateless_uniform([5, 3], rng._next(), alg="philox"),
              "range": tf.random.stateless_uniform([7], rng._next(), -2.0, 3.0, alg="philox"),
              "normal": tf.random.stateless_normal([9], rng._next(), alg="philox")}
    for key in ("uniform", "range"):
        np.testing.assert_array_equal(plain[key], kernel[key], key)
    assert_close(kernel["normal"], plain["normal"], "normal", rtol=1e-6, atol=1e-7)
    assert 0.5 < float(tf.math.reduce_std(augment.StatelessRng([3, 3]).normal([4000]))) < 1.5
