"""XLA on the CPU backend (the same op registry as XLA on GPU) stands in for ``train.jit_compile`` on a GPU:
each method's step compiles, and gives the non-XLA step's losses, gradients and BatchNorm statistics."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf.data import augment
from posedual_tf.methods.base import joints_mse
from tests.conftest import assert_close, grads_by_position, moving_stats, tiny_batch, tiny_method


def _twin(name, *extra):
    """Two copies of a method with the same initial weights."""
    _, nets_a, a = tiny_method(name, *extra)
    _, nets_b, b = tiny_method(name, *extra)
    for src, dst in zip(nets_a, nets_b):
        dst.set_weights(src.get_weights())
    return (nets_a, a), (nets_b, b)


def _supervised_gradients(m, lab):
    with tf.GradientTape() as tape:
        loss = joints_mse(m.nets[0](lab["image"], training=True), lab["target"], lab["weight"])
    variables = m.trainable_variables
    return {"loss": loss}, list(zip(tape.gradient(loss, variables), variables))


@pytest.mark.parametrize("name, extra", [
    ("coco1k_sup", ()),
    ("coco1k_cons", ("method.mask_joint_num=3",)),
    ("coco1k_dual", ("method.mask_joint_num=3",)),
    ("coco1k_dual_multiaugs", ()),                              # 4 paths: JC, JO, JOCO, JCCM
    ("coco1k_dual", ("method.paths=[MU, CO]",)),
])
def test_xla_step_equals_the_step_without_xla(name, extra):
    (nets_a, a), (nets_b, b) = _twin(name, *extra)
    lab, unl = tiny_batch(5)
    if name.endswith("multiaugs"):
        unl = dict(unl, image_RA=unl["image"][::-1].copy())

    def step(m, nets):
        if name.endswith("_sup"):
            out, pairs = _supervised_gradients(m, lab)
        else:
            out, pairs = m.gradients(lab, unl, augment.StatelessRng([7, 1]))
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
        assert_close(g, grads_b[key], f"gradient of {key}", rtol=1e-4, atol=1e-5)
    for i, (x, y) in enumerate(zip(moving_stats(nets_a), moving_stats(nets_b))):
        assert_close(x, y, f"moving statistic {i}", rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(x, y) for x, y in zip(moving_stats(nets_b), moving_stats(tiny_method(name, *extra)[1])))
