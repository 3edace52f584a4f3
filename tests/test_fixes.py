"""Every ``fixes.*`` switch, set through the config: it changes the behaviour it names and nothing else.

The primitives themselves are pinned elsewhere (test_hard_views.py, test_geometry_codec.py,
test_evaluation.py); these tests go in at the config, so a switch that stops reaching its code fails here.
Switches tested in other files are listed in ``ELSEWHERE``; a test checks that every switch is covered.
"""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import codec, config, joints, methods
from posedual_tf.data import augment, hard_views, pipeline, view_paths
from posedual_tf.evaluation import mpii, runner
from tests.conftest import LABELLED_IDS, FakeRng, moving_stats, tiny_batch, tiny_method

H, W = 64, 48                          # hard views need no network: the 4:3 crop of the brief
ELSEWHERE = {
    "hole_counts": "test_hard_views.py::test_hole_counts_follow_the_reference_table",
    "path_mean": "test_multiaugs.py::test_multi_path_dual_loss_equals_hand_computation",
    "scaled_boxes": "test_consistency_pairs.py::test_scaled_boxes_shrink_joint_cutout_to_the_input",
}


def _views_cfg(name, path, fix, value, *extra, size=(W, H)):
    return config.load(name, [f"data.image_size=[{size[0]},{size[1]}]",
                              f"data.heatmap_size=[{size[0] // 4},{size[1] // 4}]", f"method.paths=[{path}]",
                              "method.unsup_transform=false", f"fixes.{fix}={str(value).lower()}", *extra])


def _view(cfg, rng, images, teacher, labelled_ids=None):
    """The single path's hard view (no affine: ``unsup_transform`` is off) for one network."""
    settings = view_paths.ViewSettings.from_config(cfg, labelled_ids)
    views, _ = view_paths.build_views(settings, rng, {"image": tf.constant(images)}, [tf.constant(teacher)],
                                      [tf.constant(teacher)])
    return views[0][0].numpy()


def _teacher_at(points, b, h=H // 4, w=W // 4):
    """``[b, h, w, 24]`` maps whose argmax x 4 is ``points[joint] = (x, y)`` (input pixels) for every sample."""
    hm = np.zeros((b, h, w, 24), np.float32)
    for j in range(24):
        x, y = points[j]
        hm[:, y // 4, x // 4, j] = 1.0
    return hm


def test_every_fixes_switch_has_a_config_level_test():
    source = pathlib.Path(__file__).read_text()
    for field in dataclasses.fields(config.FixesConfig):
        assert f"test_fixes_{field.name}" in source or field.name in ELSEWHERE, field.name
    here = pathlib.Path(__file__).parent
    for name, where in ELSEWHERE.items():
        file, test = where.split("::")
        text = (here / file).read_text()
        assert f"def {test}" in text and f"fixes.{name}" in text, where


# ------------------------------------------------------------------------------ JC

def test_fixes_cutout_axes_clamps_rows_to_the_height():
    """Oddity 1: the reference clamps a JC box's rows to W (48), so no box reaches rows 48-63 of a 64x48
    crop; the fix clamps them to H. Same draws: the two masks agree above row 48."""
    images = np.ones((4, H, W, 3), np.float32)
    teacher = _teacher_at([(24, 56)] * 24, 4)                     # every joint low in the crop
    masks = {}
    for value in (False, True):
        cfg = _views_cfg("coco1k_cons", "JC", "cutout_axes", value, "method.mask_joint_num=5")
        masks[value] = _view(cfg, augment.StatelessRng([3, 4]), images, teacher)[..., 0] == 0
    assert not masks[False][:, 48:].any() and masks[False].any()
    assert masks[True][:, 48:].any()
    np.testing.assert_array_equal(masks[True][:, :48], masks[False][:, :48])


def test_fixes_cutout_supervised_joints_cuts_only_at_labelled_joints():
    """Oddity 2: the reference draws JC's joints from all 24 channels (the 7 ids COCO never labels too);
    the fix draws from the labelled ids only. Never-labelled channels peak top-left, labelled ones
    bottom-right, at 256x192 where the boxes are small beside the crop."""
    h, w, b = 256, 192, 8
    points = [(160, 170) if j in LABELLED_IDS else (8, 8) for j in range(24)]
    teacher = _teacher_at(points, b, h // 4, w // 4)
    images = np.ones((b, h, w, 3), np.float32)
    cut = {}
    for value in (False, True):
        cfg = _views_cfg("coco1k_cons", "JC", "cutout_supervised_joints", value, "method.mask_joint_num=5",
                         size=(w, h))
        cut[value] = _view(cfg, augment.StatelessRng([1, 7]), images, teacher, LABELLED_IDS)[..., 0] == 0
    top_left = (slice(None), slice(0, 80), slice(0, 80))
    assert cut[False][top_left].any()                   # the reference also cuts at never-labelled ids
    assert not cut[True][top_left].any() and cut[True].any()


# ------------------------------------------------------------------------------ JO

def _jo_case(cfg):
    """Sample 0 all ones, sample 1 all twos; every joint at (x 8, y 40); JO swaps the two samples' patches
    with half-sizes 5, no jitter, one joint pair (0 -> 0)."""
    images = np.stack([np.ones((H, W, 3)), 2 * np.ones((H, W, 3))]).astype(np.float32)
    teacher = _teacher_at([(8, 40)] * 24, 2)
    k = cfg.method.jo_joint_num
    rng = FakeRng(np.zeros((2, 24, 2)), np.full((2, 24, 2), 5), np.zeros((2, k)), np.zeros((2, k)), np.array([1, 0]))
    return _view(cfg, rng, images, teacher)[..., 0]


def test_fixes_jo_axes_puts_the_box_at_the_joint():
    """Oddity M1: the reference uses joint x as the row and y as the column."""
    for value, rows, cols in ((False, (3, 13), (35, 45)), (True, (35, 45), (3, 13))):
        out = _jo_case(_views_cfg("coco1k_cons", "JO", "jo_axes", value))
        want = np.ones((H, W))
        want[rows[0]:rows[1], cols[0]:cols[1]] = 2.0
        np.testing.assert_array_equal(out[0], want)


def test_fixes_jo_boxes_pastes_the_moved_source_box():
    """Oddity M2: the reference pastes its clipped source box (zero fills on a size mismatch, never the
    last row or column); the fix copies the part of the moved box inside the image. The config's view
    equals the primitive with the matching rule (pinned in test_hard_views.py), and the two differ."""
    rng = np.random.default_rng(4)
    images = rng.normal(size=(6, H, W, 3)).astype(np.float32)
    teacher = rng.uniform(size=(6, H // 4, W // 4, 24)).astype(np.float32)
    outs = {}
    for value in (False, True):
        cfg = _views_cfg("coco1k_cons", "JO", "jo_boxes", value)
        outs[value] = _view(cfg, augment.StatelessRng([5, 6]), images, teacher)
        d = hard_views.occlusion_draws(augment.StatelessRng([5, 6]), tf.constant(teacher), cfg.method.jo_joint_num)
        np.testing.assert_array_equal(outs[value], hard_views.joint_cut_occlusion(images, d, exact_boxes=value))
    assert not np.array_equal(outs[False], outs[True])
    assert (outs[False] == 0).any() and not (outs[True] == 0).any()        # zero fills: the reference's only


# ------------------------------------------------------------------------------ CO / CM

def test_fixes_hole_axes_draws_rows_with_the_height():
    """Oddity M3: CO/CM clamp a hole's rows to W (48); the fix to H. One hole per sample centred at row 40,
    column 10, half-sizes 20 rows x 5 columns."""
    outs = {}
    for value in (False, True):
        cfg = _views_cfg("coco1k_cons", "CO", "hole_axes", value, "method.co_holes=1")
        rng = FakeRng(np.array([[10]]), np.array([[40]]), np.array([[[5, 20]]]))
        outs[value] = _view(cfg, rng, np.ones((1, H, W, 3), np.float32), np.zeros((1, H // 4, W // 4, 24)))[0, ..., 0]
    want = np.ones((H, W))
    want[20:48, 5:15] = 0
    np.testing.assert_array_equal(outs[False], want)
    want[48:60, 5:15] = 0
    np.testing.assert_array_equal(outs[True], want)


# ------------------------------------------------------------------------------ teacher, optimizer

def test_fixes_teacher_bn_inference_uses_and_keeps_the_running_statistics():
    """Oddity 4: the reference's teacher passes run in train mode (batch statistics, running statistics
    updated); the fix uses the running statistics and leaves them alone."""
    _, unl = tiny_batch(2)
    for value in (False, True):
        _, (net,), m = tiny_method("coco1k_cons", f"fixes.teacher_bn_inference={str(value).lower()}")
        before = moving_stats([net])
        got = m.teacher(net, unl["image"]).numpy()
        after = moving_stats([net])
        if value:
            assert all(np.array_equal(a, b) for a, b in zip(before, after))
            np.testing.assert_allclose(got, net(unl["image"], training=False).numpy(), rtol=1e-5, atol=1e-6)
        else:
            assert not all(np.array_equal(a, b) for a, b in zip(before, after))
            mode = net(unl["image"], training=False).numpy()
            assert np.abs(got - mode).max() > 1e-3           # batch statistics, not the running ones


def test_fixes_weight_decay_decays_the_weights():
    """Oddity 6: the reference passes WD to an Adam that ignores it; the fix decays (AdamW):
    a zero gradient moves a weight by -lr * wd * w."""
    for value, want in (("false", 1.0), ("true", 1.0 - 1e-3 * 1e-4)):
        opt = methods.make_optimizer(config.load("coco1k_sup", [f"fixes.weight_decay={value}"]), 10)
        var = tf.Variable([2.0, -4.0])
        opt.apply_gradients([(tf.zeros([2]), var)])
        np.testing.assert_allclose(var.numpy(), np.array([2.0, -4.0]) * want, rtol=1e-7)


# ------------------------------------------------------------------------------ targets, decoding, PCKh

def test_fixes_target_rounding_floors_negative_centres():
    """Oddity 11: the reference rounds a centre with int(x / 4 + 0.5), which truncates towards zero: a
    joint at x = -3 px gets its peak of 1 on column 0; floor rounding puts the centre at column -1."""
    jts = np.zeros((24, 2), np.float32)
    jts[:, 0], jts[:, 1] = 24.0, 32.0
    jts[5] = (-3.0, 32.0)
    vis = np.ones(24, np.float32)
    maps = {}
    for value in (False, True):
        cfg = config.load("coco1k_sup", [f"data.image_size=[{W},{H}]", f"data.heatmap_size=[{W // 4},{H // 4}]",
                                         f"fixes.target_rounding={str(value).lower()}"])
        maker = pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg))
        target, weight = maker.targets(tf.constant(jts), tf.constant(vis))
        maps[value] = target.numpy()
        assert weight.numpy()[5] == 1.0
    sigma = 2.0
    assert maps[False][8, 0, 5] == pytest.approx(1.0)
    assert maps[True][8, 0, 5] == pytest.approx(np.exp(-1 / (2 * sigma ** 2)), rel=1e-5)
    others = [j for j in range(24) if j != 5]
    np.testing.assert_array_equal(maps[False][..., others], maps[True][..., others])


def _decode_x(cfg, heatmap):
    """The image x of joint 0 that evaluation decodes from ``heatmap [h, w]`` (identity-sized crop)."""
    hm = np.zeros((1,) + heatmap.shape + (24,), np.float32)
    hm[0, ..., 0] = heatmap
    images = np.zeros((1, 8, 8, 3), np.float32)
    batch = {"image": images, "center": np.float32([[100.0, 100.0]]), "scale": np.float32([[1.0, 1.0]]),
             "score": np.float32([1.0]), "image_id": np.int64([1]), "ann_id": np.int64([0]),
             "area": np.float32([1.0]), "raw_box": np.float32([[0, 0, 1, 1]])}
    ds = tf.data.Dataset.from_tensors(batch)
    out = runner.predict(codec.HeatmapCodec.from_config(cfg), [lambda x, training=False: tf.constant(hm)], ds, progress=False)
    return out["net1"][0]["keypoints"][0]


def test_fixes_shift_bound_refines_a_peak_at_column_1():
    """Oddity 14: the reference's quarter-pixel shift skips a peak at p = 1 (bound 1 < p); the fix shifts it."""
    heat = np.zeros((16, 12), np.float32)
    heat[6, 1], heat[6, 2], heat[6, 0] = 1.0, 0.5, 0.1            # peak at x = 1, neighbour right is higher
    ref = _decode_x(config.load("coco1k_sup", ["fixes.shift_bound=false"]), heat)
    fix = _decode_x(config.load("coco1k_sup", ["fixes.shift_bound=true"]), heat)
    # scale 1 = 200 px over 12 heatmap columns: a quarter heatmap pixel is 200 / 12 / 4 px
    assert fix[0] - ref[0] == pytest.approx(200 / 12 / 4, rel=1e-5)
    assert fix[1] == ref[1] and fix[2] == ref[2]


def test_fixes_pckh_at_0_1_reports_mean_at_0_10(monkeypatch):
    """Oddity 19: the reference's "Mean@0.1" is PCKh at 0.11; the fix at 0.10. Every joint off by 0.105
    of the head normaliser (0.6 x the head box diagonal)."""
    n = 3
    gt = np.zeros((n, 16, 2))
    gt[..., 0] = np.arange(16) * 10 + 50
    gt[..., 1] = 80.0
    heads = np.zeros((n, 2, 2))
    heads[:, 1] = [30.0, 40.0]                                    # diagonal 50: normaliser 30
    truth = {"gt": gt, "missing": np.zeros((n, 16), bool), "headboxes": heads}
    monkeypatch.setattr(mpii, "load_gt_mat", lambda path: truth)
    mapped = [{"keypoints": np.concatenate([gt[i] - 1.0 + [0.105 * 30, 0.0], np.ones((16, 1))], 1), "ann_id": i}
              for i in range(n)]                                  # 0-based predictions, +1 on scoring
    got = {}
    for value in (False, True):
        cfg = config.load("mpii_aic_dual_res18", [f"fixes.pckh_at_0_1={str(value).lower()}"])
        got[value], _ = runner._score(runner.ScoreSettings.from_config(cfg), joints.MPII, mapped, "val")
    assert got[False]["Mean@0.1"] == 100.0 and got[True]["Mean@0.1"] == 0.0
    assert got[False]["Mean"] == got[True]["Mean"] == 100.0
