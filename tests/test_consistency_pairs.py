"""The collapse study's consistency pairs (same difficulty, reversed), box sizes scaled to the input,
and the collapse statistics (low peaks) logged in training and evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import config
from posedual_tf.data import augment, view_paths
from posedual_tf.evaluation import runner
from posedual_tf.methods.base import collapse_indicator
from tests.conftest import tiny_batch as _batch, tiny_method as _method

H, W = 64, 48


def _smooth_images(b=6, seed=0):
    """Low-frequency images: bilinear resampling twice changes them by little."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / np.float32(max(H, W))
    out = np.zeros((b, H, W, 3), np.float32)
    for i in range(b):
        for c in range(3):
            fx, fy, px, py = rng.uniform(1, 3), rng.uniform(1, 3), rng.uniform(0, 6), rng.uniform(0, 6)
            out[i, ..., c] = 1.0 + np.sin(fx * 2 * np.pi * xx + px) * np.cos(fy * 2 * np.pi * yy + py)
    return out


def _cfg(pair, *extra):
    return config.load("coco1k_cons", [f"method.consistency_pair={pair}", f"data.image_size=[{W},{H}]",
                                       "data.rot_factor=30", *extra])


def _fully_inside(cfg, seed):
    """Pixels of the student's frame that both the student's view and the moved teacher's view take
    wholly from inside the image (the same draws on an all-ones image: no blend with the zero padding)."""
    ones = tf.ones([6, H, W, 3])
    p = view_paths.build_pair_views(view_paths.ViewSettings.from_config(cfg), augment.StatelessRng(seed), {"image": ones}, [None])
    return (p.student[0].numpy()[..., 0] > 0.999) & (p.target(p.teacher[0]).numpy()[..., 0] > 0.999)


@pytest.mark.parametrize("pair", ["same", "reversed"])
def test_pair_target_is_the_teacher_map_in_the_students_frame(pair):
    """With an equivariant 'network' (the identity), the target made from the teacher's view must equal
    the student's view wherever both see the image: the warp between the frames is right."""
    cfg = _cfg(pair)
    x = _smooth_images()
    p = view_paths.build_pair_views(view_paths.ViewSettings.from_config(cfg), augment.StatelessRng([3, 4]), {"image": tf.constant(x)}, [None])
    student, teacher = p.student[0].numpy(), p.teacher[0].numpy()
    target = p.target(p.teacher[0]).numpy()
    inside = _fully_inside(cfg, [3, 4])
    assert inside.mean() > 0.3
    assert np.abs(target - student)[inside].max() < 0.08
    # the frames do differ: without the warp the teacher's view is far from the student's
    assert np.abs(teacher - student)[inside].mean() > 0.1
    if pair == "reversed":
        np.testing.assert_array_equal(student, x)                    # the student sees the easy view
    else:
        assert np.abs(student - x).mean() > 0.05 and np.abs(teacher - x).mean() > 0.05   # both hard


def test_same_pair_draws_the_teachers_view_independently():
    cfg = _cfg("same", "method.mask_joint_num=3")
    x = tf.constant(_smooth_images(4))
    heat = tf.random.stateless_uniform([4, H // 4, W // 4, 24], [1, 1])
    p = view_paths.build_pair_views(view_paths.ViewSettings.from_config(cfg), augment.StatelessRng([5, 6]), {"image": x}, [heat])
    cut_s = np.mean(np.all(p.student[0].numpy() == 0, -1))
    cut_t = np.mean(np.all(p.teacher[0].numpy() == 0, -1))
    assert cut_s > 0.02 and cut_t > 0.02                         # joint cutout on both views
    assert not np.allclose(p.student[0].numpy(), p.teacher[0].numpy())


def test_pairs_need_one_path_and_the_reference_schedule():
    with pytest.raises(config.ConfigError, match="method.consistency_pair"):
        config.load("coco1k_dual", ["method.consistency_pair=same", "method.paths=[JC,JO]"])
    with pytest.raises(config.ConfigError, match="train.pass_schedule"):
        config.load("coco1k_dual", ["method.consistency_pair=reversed", "train.pass_schedule=fused"])
    assert config.load("coco1k_dual").method.consistency_pair == "easy_hard"       # paper configs


@pytest.mark.parametrize("pair", ["easy_hard", "same", "reversed"])
def test_teacher_and_student_inputs_of_each_pair(pair, monkeypatch):
    """Which images the teacher and the student passes take in a PoseCons step of each pair."""
    cfg, (net,), m = _method("coco1k_cons", f"method.consistency_pair={pair}", "method.unsup_transform=true")
    lab, unl = _batch(5)
    seen = []
    teacher = m.teacher
    monkeypatch.setattr(m, "teacher", lambda n, images: seen.append(np.asarray(images)) or teacher(n, images))
    with tf.GradientTape() as tape:
        out = m.compute_losses(tape, lab, unl, augment.StatelessRng([1, 2]))
    easy = unl["image"]
    if pair == "easy_hard":
        assert len(seen) == 1 and np.array_equal(seen[0], easy)
    else:       # no easy-view teacher pass without JC/JO: the only teacher pass is on a hard view
        assert len(seen) == 1 and not np.allclose(seen[0], easy)
    student = out["hard"][0][0].numpy()
    on_easy = net(easy, training=True).numpy()
    assert np.allclose(student, on_easy, atol=1e-5) == (pair == "reversed")
    assert np.isfinite(float(out["loss_cons"])) and float(out["loss_cons"]) > 0


def test_scaled_boxes_shrink_joint_cutout_to_the_input():
    assert view_paths.box_geometry(192, True) == ((10, 19), 10.0)            # 256x192: the reference's
    assert view_paths.box_geometry(64, False) == ((10, 19), 10.0)
    half, jitter = view_paths.box_geometry(64, True)
    assert half == (3, 6) and jitter == pytest.approx(10 / 3)

    def widest_cut(scaled):
        cfg = config.load("coco1k_dual", ["method.mask_joint_num=1", f"fixes.scaled_boxes={str(scaled).lower()}",
                                          "fixes.cutout_axes=true"])
        x = tf.ones([64, 96, 64, 3])
        heat = tf.random.stateless_uniform([64, 24, 16, 24], [2, 3])
        out = view_paths.apply_op("JC", augment.StatelessRng([7, 8]), x, heat, 0, view_paths.ViewSettings.from_config(cfg)).numpy()
        cut = np.all(out == 0, -1)
        return max(cut.sum(axis=2).max(), cut.sum(axis=1).max())

    assert widest_cut(True) <= 2 * 6 < widest_cut(False)


def test_low_peak_statistics():
    w = np.ones((2, 24), np.float32)
    zero = np.zeros((2, 16, 12, 24), np.float32)
    peaked = zero.copy()
    peaked[:, 5, 5, :12] = 0.9
    assert float(collapse_indicator(zero, w, 0.1)) == 1.0
    assert float(collapse_indicator(peaked, w, 0.1)) == pytest.approx(0.5)
    assert float(collapse_indicator(peaked, w)) == pytest.approx(0.45)
    kps = [np.array([[1, 1, 0.05], [2, 2, 0.5], [3, 3, 0.02], [4, 4, 0.9]])]
    stats = runner.peak_stats(kps, 0.1)
    assert stats["peaks_below"] == 0.5 and stats["peak_mean"] == pytest.approx(0.3675)
