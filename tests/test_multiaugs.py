"""The MultiAugs multi-path step (MultiAugs PoseCotrain.forward / PoseCons.forward): one path equals the PoseDual/PoseCons step, the
P-path loss equals a hand computation, model selection and the published configs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import callbacks, config
from posedual_tf.data import augment, hard_views
from posedual_tf.methods.base import joints_mse
from tests.conftest import TINY_SETS, tiny_batch as _batch, tiny_method as _method, mse_np as _mse_np

LABELLED_IDS = [1, 2, 3, 4, 5, 6, 11] + list(range(14, 24))


def _step_before_multiaugs(cfg, nets, lab, unl, rng):
    """The PoseCons / PoseDual step as it was before paths existed (reference PoseCons.forward / PoseCotrain.forward), written out:
    sup passes, teachers, joint cutout per net (at the other net's joints), one theta, hard passes."""
    m = cfg.method
    sups = [f(lab["image"], training=True) for f in nets]
    teachers = [tf.stop_gradient(f(unl["image"], training=True)) for f in nets]
    cut_at = teachers[::-1]
    views = [hard_views.joint_cutout(rng, unl["image"], t, m.mask_joint_num)[0] for t in cut_at]
    theta = augment.batch_affine_theta(rng, tf.shape(unl["image"])[0], cfg.data.scale_factor, cfg.data.rot_factor,
                                       m.unsup_rot_prob)
    views = [augment.affine_grid_warp(v, theta) for v in views]
    targets = [augment.affine_grid_warp(t, theta) for t in teachers][::-1]      # net n learns the other's
    hards = [f(v, training=True) for f, v in zip(nets, views)]
    pose = sum(joints_mse(s, lab["target"], lab["weight"]) for s in sups)
    cons = sum(joints_mse(h, t, unl["weight"]) for h, t in zip(hards, targets))
    return m.sup_weight * pose + cons


@pytest.mark.parametrize("name", ["coco1k_dual", "coco1k_cons"])
def test_one_path_step_equals_the_posedual_step(name):
    cfg, nets, m = _method(name, "method.paths=[JC]", "method.mask_joint_num=5")
    lab, unl = _batch(7)
    with tf.GradientTape() as tape:
        got = m.compute_losses(tape, lab, unl, augment.StatelessRng([3, 9]))["loss"]
    grads = tape.gradient(got, m.trainable_variables)
    with tf.GradientTape() as tape:
        want = _step_before_multiaugs(cfg, nets, lab, unl, augment.StatelessRng([3, 9]))
    want_grads = tape.gradient(want, m.trainable_variables)
    assert float(got) == float(want)
    for g, w in zip(grads, want_grads):
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    # the PoseDual-era config (no paths, mask_joint_num) is the same step
    cfg2, nets2, m2 = _method(name, "method.mask_joint_num=5")
    for a, b in zip(m2.trainable_variables, m.trainable_variables):
        a.assign(b)
    with tf.GradientTape() as tape:
        legacy = m2.compute_losses(tape, lab, unl, augment.StatelessRng([3, 9]))["loss"]
    assert float(legacy) == float(want)


def test_multi_path_dual_loss_equals_hand_computation():
    """paths [JO, CM]: draws op by op, net by net (v1 at net 2's joints), one theta, net 1's passes then
    net 2's, losses summed over paths with weight 1."""
    cfg, (f1, f2), m = _method("coco1k_dual", "method.paths=[JO, CM]")
    lab, unl = _batch(5)
    b, h, w = 4, 96, 64
    s1, s2 = f1(lab["image"], training=True).numpy(), f2(lab["image"], training=True).numpy()
    t1, t2 = f1(unl["image"], training=True), f2(unl["image"], training=True)
    rng = augment.StatelessRng([2, 4])
    jo1 = hard_views.joint_cut_occlusion(unl["image"], hard_views.occlusion_draws(rng, t2, 2))
    jo2 = hard_views.joint_cut_occlusion(unl["image"], hard_views.occlusion_draws(rng, t1, 2))
    cm1 = hard_views.cutmix(unl["image"], hard_views.hole_draws(rng, b, h, w, 2, with_perm=True))
    cm2 = hard_views.cutmix(unl["image"], hard_views.hole_draws(rng, b, h, w, 2, with_perm=True))
    theta = augment.batch_affine_theta(rng, b, 0.25, 30.0, 0.8)
    warp = lambda v: augment.affine_grid_warp(v, theta)
    wt1, wt2 = warp(t1).numpy(), warp(t2).numpy()
    pose = 0.5 * (_mse_np(s1, lab["target"], lab["weight"]) + _mse_np(s2, lab["target"], lab["weight"]))
    cons_paths = [_mse_np(f1(warp(v1), training=True), wt2, unl["weight"]) +
                  _mse_np(f2(warp(v2), training=True), wt1, unl["weight"]) for v1, v2 in ((jo1, jo2), (cm1, cm2))]
    with tf.GradientTape() as tape:
        out = m.compute_losses(tape, lab, unl, augment.StatelessRng([2, 4]))
    assert float(out["loss"]) == pytest.approx(pose + sum(cons_paths), rel=1e-5)
    assert [float(c) for c in out["cons_paths"]] == pytest.approx(cons_paths, rel=1e-5)
    assert len(out["hard"]) == 2 and len(out["hard"][0]) == 2
    # fixes.path_mean: the consistency share no longer grows with P
    cfg_mean, _, m_mean = _method("coco1k_dual", "method.paths=[JO, CM]", "fixes.path_mean=true")
    for a, c in zip(m_mean.trainable_variables, m.trainable_variables):
        a.assign(c)
    with tf.GradientTape() as tape:
        out = m_mean.compute_losses(tape, lab, unl, augment.StatelessRng([2, 4]))
    assert float(out["loss"]) == pytest.approx(pose + sum(cons_paths) / 2, rel=1e-5)


def test_repeated_plain_paths_multiply_the_consistency_and_log_per_path():
    """Two A60 paths are the same warped view, each its own pass: the loss is pose + 2 cons (summed, no
    1/P); heat fusion averages the two maps first (pose + 1 cons); logs carry each path's values."""
    lab, unl = _batch(6)
    for extra, factor in (((), 2.0), (("method.heat_fusion=true",), 1.0)):
        cfg, (net,), m = _method("coco1k_cons", "method.paths=[A60, A60]", *extra)
        s, t = net(lab["image"], training=True), net(unl["image"], training=True)
        rng = augment.StatelessRng([1, 1])
        theta = augment.batch_affine_theta(rng, 4, 0.25, 30.0, 0.8)
        view, target = augment.affine_grid_warp(unl["image"], theta), augment.affine_grid_warp(t, theta)
        pose = _mse_np(s, lab["target"], lab["weight"])
        cons = _mse_np(net(view, training=True), target, unl["weight"])
        assert cons > 0
        with tf.GradientTape() as tape:
            out = m.compute_losses(tape, lab, unl, augment.StatelessRng([1, 1]))
        assert float(out["loss"]) == pytest.approx(pose + factor * cons, rel=1e-5)
    logs = m.train_on_batch((lab, unl), return_dict=True)
    assert {"cons_A60", "cons_A60_2", "collapse_A60", "collapse_A60_2", "collapse_1"} <= set(logs)
    assert logs["cons_A60"] == pytest.approx(logs["cons_A60_2"], rel=1e-5)


def test_model_selection_by_the_mean_of_the_two_nets():
    metrics = {"net1": {"AP": 0.40}, "net2": {"AP": 0.50}, "ensemble": {"AP": 0.9}}
    assert callbacks.selection_score(config.load("coco1k_dual").train.select_best_by, metrics) == 0.40
    assert callbacks.selection_score(config.load("coco1k_dual_multiaugs").train.select_best_by, metrics) == pytest.approx(0.45)
    assert callbacks.selection_score(config.load("mpii_aic_dual_multiaugs_hrnet_w32").train.select_best_by,
                                    {"net1": {"Mean": 90.0}, "net2": {"Mean": 92.0}}) == pytest.approx(91.0)


@pytest.mark.parametrize("name,paths,depth,batch,epochs,steps,pretrained", [
    ("coco1k_dual_multiaugs", ["JC", "JO", "JOCO", "JCCM"], 18, 128, 30, [20, 25], "resnet18_5c_gluon_posedual.pth"),
    ("coco1k_cons_multiaugs", ["JC", "JO", "JOCO", "JCCM"], 18, 128, 30, [20, 25], "resnet18-5c106cde.pth"),
    ("coco5k_dual_multiaugs", ["JC", "JO", "JOCO", "JCCM"], 18, 128, 30, [20, 25], "resnet18_5c_gluon_posedual.pth"),
    ("coco10k_dual_multiaugs", ["JC", "JO", "JOCO", "JCCM"], 18, 128, 30, [20, 25], "resnet18_5c_gluon_posedual.pth"),
    ("coco_wild_dual_multiaugs_res50", ["JOCO", "JCCM"], 50, 128, 400, [300, 350], "resnet50-19c8e357.pth"),
    ("coco_wild_dual_multiaugs_res101", ["JOCO", "JCCM"], 101, 128, 400, [300, 350], "resnet101-5d3b4d8f.pth"),
    ("coco_wild_dual_multiaugs_hrnet_w48_384x288", ["JOCO", "JCCM"], None, 32, 300, [220, 260],
     "hrnet_w48-8ef0771d.pth"),
    ("mpii_aic_dual_multiaugs_hrnet_w32", ["JOCO", "JCCM"], None, 64, 300, [220, 260], "hrnet_w32-36af842e.pth"),
])
def test_multiaugs_configs_resolve_to_the_spec(name, paths, depth, batch, epochs, steps, pretrained):
    cfg = config.load(name)
    m = cfg.method
    assert m.paths == paths and (m.mask_joint_num, m.jo_joint_num, m.co_holes, m.cm_holes) == (5, 2, 5, 2)
    assert m.rand_magnitude == 20 and not m.rand_aug and m.unsup_transform
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.lr_step, cfg.train.lr) == (batch, epochs, steps, 1e-3)
    assert cfg.train.select_best_by == "mean" and cfg.model.pretrained.endswith("/" + pretrained)
    assert cfg.model.backbone == "hrnet" if depth is None else cfg.model.depth == depth
    assert not any(vars(cfg.fixes).values())                  # paper configs keep every oddity
    assert not (m.heat_fusion or m.conf_masking or m.sharpen_pred)
    if name.startswith("coco") and "k_" in name:
        n = int(name[4:name.index("k_")])
        assert cfg.data.labelled.max_instances == n * 1000 and cfg.data.image_size == [192, 256]
    if "hrnet_w48" in name:
        assert cfg.data.image_size == [288, 384] and cfg.data.sigma == 3.0
    if name.startswith("mpii"):
        assert cfg.data.image_size == [256, 256] and cfg.data.sigma == 3.0 and cfg.model.hrnet_width == 32


def test_demo_multiaugs_end_to_end_reduced(tmp_path):
    workdir = tmp_path / "ma"
    proc = subprocess.run(
        [sys.executable, "-m", "posedual_tf.train", "--config", "demo_multiaugs", f"--set=workdir={workdir}",
         "--set=train.epochs=1", "--set=train.steps_per_epoch=4", "--set=data.synthetic.unlabelled_images=24",
         "--set=data.synthetic.labelled_images=24", "--set=data.synthetic.val_images=8", *TINY_SETS[2:],
         "--progress=lines", "--set=train.log_every=2"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert set(metrics) >= {"net1", "net2", "ensemble"}
    best = json.loads((workdir / "best" / "best.json").read_text())
    assert best["select_best_by"] == "mean"
    assert best["perf"] == pytest.approx((metrics["net1"]["AP"] + metrics["net2"]["AP"]) / 2, abs=1e-6)
    log = (workdir / "train_log.txt").read_text()             # every metric, every train.log_every steps
    for label in ("JC", "JO", "JOCO", "JCCM"):
        assert f"cons_{label}" in log and f"collapse_{label}" in log
    # TensorBoard: per path its consistency loss and peak height, and a pair grid per network and path
    events = list((workdir / "tb" / "demo_multiaugs").glob("events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events[0])) for v in e.summary.value}
    assert {"paths/JC/loss_consistency", "paths/JCCM/peak_height", "pairs/net1_JC", "pairs/net2_JOCO"} <= tags


def test_sharpening_and_confidence_masking_follow_the_spec_order():
    """MultiAugs lib/core/loss.py: weight, then softmax over each map's pixels, then the mask, then 0.5 MSE."""
    rng = np.random.default_rng(3)
    p, t = rng.uniform(size=(2, 4, 3, 5)).astype(np.float32), rng.uniform(size=(2, 4, 3, 5)).astype(np.float32)
    w = np.float32([[1, 0, 1, 1, 1], [1, 1, 1, 0, 1]])
    mask = (t.max(axis=(1, 2)) > 0.9).astype(np.float32)

    def soft(x):
        e = np.exp(x.reshape(2, 12, 5) - x.reshape(2, 12, 5).max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).reshape(x.shape)

    wp, wt = p * w[:, None, None], t * w[:, None, None]
    want = 0.5 * np.mean(((soft(wp) - soft(wt)) * mask[:, None, None]) ** 2)
    assert float(joints_mse(p, t, w, sharpen=True, mask=mask)) == pytest.approx(want, rel=1e-5)
    assert float(joints_mse(p, t, w, mask=mask)) == pytest.approx(
        0.5 * np.mean(((wp - wt) * mask[:, None, None]) ** 2), rel=1e-5)
    assert 0 < mask.sum() < mask.size
