"""Pass schedules (``train.pass_schedule``, models/bn_groups.py): per network (teachers first, their BatchNorm
updates deferred) and fused (one call per network on [sup; paths] with per-group BatchNorm) give the reference
schedule's outputs, gradients and running statistics."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf.data import augment
from posedual_tf.models import bn_groups
from posedual_tf.models.layers import BatchNorm
from posedual_tf.models.resnet import pose_resnet
from tests.conftest import assert_close as _close, grads_by_position as _by_position, \
    moving_stats as _moving_stats, tiny_batch as _batch, twin_methods


@pytest.mark.parametrize("schedule", ["per_network", "fused"])
@pytest.mark.parametrize("name, extra", [
    ("coco1k_dual", ("method.mask_joint_num=3",)),          # cutouts placed at the other net's teacher
    ("coco1k_cons", ("method.mask_joint_num=3",)),
    ("coco1k_dual_multiaugs", ()),                            # 4 paths: JC, JO, JOCO, JCCM
])
def test_schedule_equals_the_reference_schedule(name, extra, schedule):
    (nets_a, a), (nets_b, b) = twin_methods(name, extra, [f"train.pass_schedule={schedule}"])
    lab, unl = _batch(5)
    if name.endswith("multiaugs"):
        unl = dict(unl, image_RA=unl["image"][::-1].copy())
    out_a, pairs_a = a.gradients(lab, unl, augment.StatelessRng([7, 1]))
    out_b, pairs_b = b.gradients(lab, unl, augment.StatelessRng([7, 1]))
    for key in ("loss", "loss_pose", "loss_cons"):
        _close(out_a[key], out_b[key], key)
    for n in range(len(nets_a)):
        _close(out_a["sup"][n], out_b["sup"][n], f"sup map of net {n + 1}")
        assert len(out_b["hard"][n]) == len(a.paths)
        for p, (ha, hb) in enumerate(zip(out_a["hard"][n], out_b["hard"][n])):
            _close(ha, hb, f"net {n + 1} path {a.path_labels[p]}")
    grads_a, grads_b = _by_position(nets_a, pairs_a), _by_position(nets_b, pairs_b)
    assert set(grads_a) == set(grads_b) and len(grads_a) == len(a.trainable_variables)
    for key, g in grads_a.items():
        assert g is not None, key
        _close(g, grads_b[key], f"gradient of {key}", atol=1e-5)
    # running statistics after sup, teacher, path 1..P in both schedules
    for i, (x, y) in enumerate(zip(_moving_stats(nets_a), _moving_stats(nets_b))):
        _close(x, y, f"moving statistic {i}", rtol=1e-5, atol=1e-6)


def test_deferred_statistics_enter_at_their_position():
    """grouped_call([a, b], insert={1: teacher c}) updates running statistics as net(a), net(c), net(b);
    the order matters (running averages), so inserting c anywhere else gives other values."""
    rng = np.random.default_rng(0)
    a, b, c = (tf.constant(rng.normal(i, 1 + i, size=(3, 32, 32, 3)).astype(np.float32)) for i in range(3))
    ref, fused = pose_resnet(18, (32, 32, 3), 5, width=0.125), pose_resnet(18, (32, 32, 3), 5, width=0.125)
    fused.set_weights(ref.get_weights())
    start = ref.get_weights()
    before = _moving_stats([ref])
    out_a, _, out_b = ref(a, training=True), ref(c, training=True), ref(b, training=True)
    with bn_groups.deferred() as teacher:
        fused(c, training=True)
    assert all(np.array_equal(x, y) for x, y in zip(before, _moving_stats([fused])))
    got_a, got_b = bn_groups.grouped_call(fused, [a, b], insert={1: teacher})
    _close(out_a, got_a, "group a's output")
    _close(out_b, got_b, "group b's output")
    for i, (x, y) in enumerate(zip(_moving_stats([ref]), _moving_stats([fused]))):
        _close(x, y, f"moving statistic {i}", rtol=1e-5, atol=1e-6)
    # the teacher's statistics in another position: different running statistics
    wrong = pose_resnet(18, (32, 32, 3), 5, width=0.125)
    wrong.set_weights(start)
    with bn_groups.deferred() as teacher:
        wrong(c, training=True)
    bn_groups.grouped_call(wrong, [a, b], insert={0: teacher})
    assert not all(np.allclose(x, y, rtol=1e-4) for x, y in zip(_moving_stats([ref]), _moving_stats([wrong])))


def test_deferred_pass_leaves_running_statistics_untouched():
    net = pose_resnet(18, (32, 32, 3), 5, width=0.125)
    before = _moving_stats([net])
    x = tf.constant(np.random.default_rng(1).normal(2, 3, size=(2, 32, 32, 3)).astype(np.float32))
    with bn_groups.deferred() as teacher:
        net(x, training=True)
    assert all(np.array_equal(p, q) for p, q in zip(before, _moving_stats([net])))
    bn_layers = [layer for layer in net.layers if isinstance(layer, BatchNorm)]
    assert set(teacher.recorded) == {layer.name for layer in bn_layers}
    net(x, training=True)                                   # a plain call still updates
    assert not all(np.array_equal(p, q) for p, q in zip(before, _moving_stats([net])))
