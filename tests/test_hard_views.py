"""Hard-view primitives pinned against MultiAugs lib/utils/augments.py with injected draws, and the paths built
from them (hole counts, draw order, cross-net teachers)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import aug_paths, config
from posedual_tf.data import augment, hard_views, view_paths
from tests.conftest import FakeRng


def _heatmaps_at(points, h=16, w=12, j=24):
    """``[B, h, w, J]`` heatmaps whose argmax (x4) is ``points [B, J, 2]`` in input pixels."""
    b = len(points)
    hm = np.zeros((b, h, w, j), np.float32)
    for i in range(b):
        for k in range(j):
            x, y = points[i][k]
            hm[i, y // 4, x // 4, k] = 1.0
    return hm


# ------------------------------------------------------------------------------ JC (reference mask_joint)

@pytest.mark.parametrize("swap_axes", [True, False])
def test_joint_cutout_zeroes_exactly_the_windows(swap_axes):
    h_img, w_img = 64, 48
    hm = np.zeros((1, 16, 12, 24), np.float32)
    peaks = {14: (2, 3), 17: (10, 14), 11: (6, 1)}           # (x, y) in heatmap pixels
    for j, (x, y) in peaks.items():
        hm[0, y, x, j] = 1.0
    images = np.ones((1, h_img, w_img, 3), np.float32)
    out, mask = hard_views.joint_cutout(augment.StatelessRng([0, 1]), images, hm, 3, allowed_joints=list(peaks),
                                        swap_axes=swap_axes, jitter=0.0, half_size=(5, 5))
    want = np.zeros((h_img, w_img), bool)
    x_lim, y_lim = (h_img, w_img) if swap_axes else (w_img, h_img)
    for x, y in peaks.values():
        qx, qy = 4 * x, 4 * y
        x0, x1 = np.clip([qx - 5, qx + 5], 0, x_lim)
        y0, y1 = np.clip([qy - 5, qy + 5], 0, y_lim)
        want[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(mask.numpy()[0, ..., 0] > 0, want)
    np.testing.assert_array_equal(out.numpy()[0, ..., 0] == 0, want)
    if swap_axes:  # the reference clamps rows to the width (48): the box at rows 51-60 vanishes
        assert not want[48:, :].any()
    else:
        assert want[51:61, 35:45].all()


def test_joint_cutout_reference_draws_from_all_channels_with_replacement():
    """The reference's JC choice is K uniform draws over all J channels: a repeated draw cuts one box."""
    hm = np.zeros((1, 16, 12, 24), np.float32)
    hm[0, 8, 6, :] = 1.0                                   # every joint at (24, 32) ...
    hm[0, 2, 2, 3] = 2.0                                   # ... but joint 3, at (8, 8)
    rng = FakeRng(np.zeros((1, 24, 2)), np.full((1, 24, 2), 5), np.array([[3, 3, 3]]))
    _, mask = hard_views.joint_cutout(rng, np.ones((1, 64, 48, 3), np.float32), hm, 3)
    want = np.zeros((64, 48), bool)
    want[3:13, 3:13] = True                                # one 10x10 box, drawn three times
    np.testing.assert_array_equal(mask.numpy()[0, ..., 0] > 0, want)


# ------------------------------------------------------------------------------ JO (MultiAugs keypoint_cutmix_perception)

def _py_slice(start, end, size):
    return range(size)[start:end]


def _jo_spec(x, q, half, dest, src, source, transposed=True):
    """MultiAugs keypoint_cutmix_perception, step by step, with Python slices (a negative end wraps)."""
    out, x0 = x.copy(), x.copy()
    b, h, w, _ = x.shape
    row, col = (q[..., 0], q[..., 1]) if transposed else (q[..., 1], q[..., 0])
    for i in range(b):
        m = source[i]
        for k in range(dest.shape[1]):
            r, c, e0, e1 = row[m, src[i, k]], col[m, src[i, k]], half[m, src[i, k], 0], half[m, src[i, k], 1]
            R0, R1 = np.clip([r - e0, r + e0], 0, h - 1)
            C0, C1 = np.clip([c - e1, c + e1], 0, w - 1)
            up, down, left, right = abs(R0 - r), abs(R1 - r), abs(C0 - c), abs(C1 - c)
            rd, cd = row[i, dest[i, k]], col[i, dest[i, k]]
            D0, D1 = np.clip([rd - up, rd + down], 0, h - 1)
            E0, E1 = np.clip([cd - left, cd + right], 0, w - 1)
            oy, ox = abs((R1 - R0) - (D1 - D0)), abs((C1 - C0) - (E1 - E0))
            S0, S1 = R0 + (oy if D0 == 0 else 0), R1 - (oy if D1 == h - 1 else 0)
            T0, T1 = C0 + (ox if E0 == 0 else 0), C1 - (ox if E1 == w - 1 else 0)
            rows, cols = _py_slice(S0, S1, h), _py_slice(T0, T1, w)
            if D1 - D0 <= 0 or E1 - E0 <= 0:
                continue
            if len(rows) == 0 or len(cols) == 0 or len(rows) != D1 - D0 or len(cols) != E1 - E0:
                out[i, D0:D1, E0:E1] = 0
            else:
                out[i, D0:D1, E0:E1] = x0[m][np.ix_(list(rows), list(cols))]
    return out


def _jo_draws(seed, b, h, w, k=2, j=24):
    r = np.random.default_rng(seed)
    q = np.stack([r.integers(-30, max(h, w) + 30, (b, j)), r.integers(-30, max(h, w) + 30, (b, j))], -1)
    return dict(q=q.astype(np.int32), half=r.integers(10, 20, (b, j, 2)).astype(np.int32),
                dest=r.integers(0, j, (b, k)).astype(np.int32), src=r.integers(0, j, (b, k)).astype(np.int32),
                source=r.integers(0, b, (b,)).astype(np.int32))


@pytest.mark.parametrize("transposed", [True, False])
def test_joint_cut_occlusion_follows_the_spec_rule(transposed):
    """Copies, zero boxes on a size mismatch, skips, shifted starts/ends, wraps: equal to the spec's loop
    on 40 random batches with anchors on and off the image."""
    h, w, b = 64, 48, 5
    kinds = {"copy": 0, "zero": 0}
    for seed in range(40):
        d = _jo_draws(seed, b, h, w)
        x = np.random.default_rng(100 + seed).normal(size=(b, h, w, 3)).astype(np.float32) + 5.0
        want = _jo_spec(x, transposed=transposed, **d)
        draws = hard_views.OcclusionDraws(**{k: tf.constant(v) for k, v in d.items()})
        got = hard_views.joint_cut_occlusion(x, draws, transposed=transposed).numpy()
        np.testing.assert_array_equal(got, want)
        kinds["zero"] += int((want == 0).any(axis=-1).sum() > 0)
        kinds["copy"] += int(((want != x) & (want != 0)).any())
    assert kinds["zero"] > 5 and kinds["copy"] > 10          # both branches were exercised


def test_joint_cut_occlusion_anchor_is_transposed_and_last_row_untouched():
    """A patch around joint (x=40, y=12) lands at rows 40+-e, columns 12+-e under the reference."""
    h, w = 64, 48
    q = np.zeros((2, 24, 2), np.int32)
    q[:, :, 0], q[:, :, 1] = 40, 12
    d = dict(q=q, half=np.full((2, 24, 2), 5, np.int32), dest=np.zeros((2, 1), np.int32),
             src=np.zeros((2, 1), np.int32), source=np.array([1, 0], np.int32))
    x = np.stack([np.full((h, w, 3), 1.0), np.full((h, w, 3), 2.0)]).astype(np.float32)
    draws = hard_views.OcclusionDraws(**{k: tf.constant(v) for k, v in d.items()})
    ref = hard_views.joint_cut_occlusion(x, draws).numpy()
    changed = np.argwhere(ref[0, ..., 0] == 2.0)
    assert changed[:, 0].min() == 35 and changed[:, 0].max() == 44      # rows from joint x
    assert changed[:, 1].min() == 7 and changed[:, 1].max() == 16       # columns from joint y
    fixed = hard_views.joint_cut_occlusion(x, draws, transposed=False).numpy()
    changed = np.argwhere(fixed[0, ..., 0] == 2.0)
    assert (changed[:, 0].min(), changed[:, 0].max(), changed[:, 1].min(), changed[:, 1].max()) == (7, 16, 35, 44)


def test_joint_cut_occlusion_exact_boxes_fix_never_zero_fills():
    """fixes.jo_boxes: every pasted pixel is the source pixel at the same offset from its anchor."""
    h, w, b = 64, 48, 5
    for seed in range(10):
        d = _jo_draws(seed, b, h, w)
        x = np.random.default_rng(seed).normal(size=(b, h, w, 3)).astype(np.float32) + 5.0
        draws = hard_views.OcclusionDraws(**{k: tf.constant(v) for k, v in d.items()})
        got = hard_views.joint_cut_occlusion(x, draws, transposed=False, exact_boxes=True).numpy()
        assert not (got == 0).any()
        i = 0
        k = d["dest"].shape[1] - 1                       # the last paste is never overwritten
        m, js, jd = d["source"][i], d["src"][i, k], d["dest"][i, k]
        (xs, ys), (xd, yd) = d["q"][m, js], d["q"][i, jd]
        er, ec = d["half"][m, js]
        for r in range(max(0, yd - er), min(h, yd + er)):
            for c in range(max(0, xd - ec), min(w, xd + ec)):
                rs, cs = r - yd + ys, c - xd + xs
                if 0 <= rs < h and 0 <= cs < w:
                    np.testing.assert_array_equal(got[i, r, c], x[m, rs, cs])


def test_joint_cut_occlusion_reference_statistics_at_256x192():
    """With standing-person joints, the reference pastes far less than the fixed geometry (spec 1.2)."""
    rng = np.random.default_rng(0)
    b, h, w = 32, 256, 192
    pts = np.stack([rng.uniform(40, 150, (b, 24)), rng.uniform(20, 240, (b, 24))], -1).astype(int)
    hm = _heatmaps_at(pts, 64, 48)
    x = tf.ones([b, h, w, 3]) * 3.0 + tf.random.stateless_normal([b, h, w, 3], [1, 2])
    draws = hard_views.occlusion_draws(augment.StatelessRng([4, 4]), hm, 2)
    ref = hard_views.joint_cut_occlusion(x, draws).numpy()
    fix = hard_views.joint_cut_occlusion(x, draws, transposed=False).numpy()
    zero_ref = (ref == 0).all(-1).mean()
    zero_fix = (fix == 0).all(-1).mean()
    assert zero_ref > 3 * zero_fix


# ------------------------------------------------------------------------------ CO, CM, MU (1.3-1.5)

def test_cutout_boxes_use_the_swapped_axes_and_the_fix_does_not():
    h, w = 64, 48
    # column centre, row centre, half-sizes (column, row): sample 0 off the right edge, sample 1 at rows 28-52
    draws = [np.array([[60], [20]]), np.array([[30], [40]]), np.array([[[10, 10]], [[10, 12]]])]
    x = np.ones((2, h, w, 3), np.float32)
    ref = hard_views.cutout(x, hard_views.hole_draws(FakeRng(*draws), 2, h, w, 1)).numpy()
    assert (ref[0] == 1).all()                                  # columns [50, 64) lie past W = 48
    want = np.ones((h, w), bool)
    want[28:48, 10:30] = False                                  # rows clamped to W = 48, columns to H
    np.testing.assert_array_equal(ref[1, ..., 0] == 1, want)
    fix = hard_views.cutout(x, hard_views.hole_draws(FakeRng(*draws), 2, h, w, 1, swap_axes=False)).numpy()
    want = np.ones((h, w), bool)
    want[28:52, 10:30] = False
    np.testing.assert_array_equal(fix[1, ..., 0] == 1, want)


def test_cutout_reference_misses_the_bottom_rows_and_a_fifth_of_holes_at_256x192():
    d = hard_views.hole_draws(augment.StatelessRng([1, 2]), 4000, 256, 192, 5)
    off = (np.minimum(d.c1.numpy(), 192) <= d.c0.numpy())
    assert abs(off.mean() - 0.193) < 0.01                        # random_cutout's centre rule: ~19.3 %
    assert d.r1.numpy().max() <= 192
    f = hard_views.hole_draws(augment.StatelessRng([1, 2]), 4000, 256, 192, 5, swap_axes=False)
    assert f.r1.numpy().max() == 256 and (np.minimum(f.c1.numpy(), 192) <= f.c0.numpy()).mean() == 0


def test_cutmix_copies_the_same_region_of_the_permuted_sample():
    h, w = 64, 48
    x = np.stack([np.full((h, w, 3), v, np.float32) for v in (1.0, 2.0, 3.0)])
    x[2, 5, 5] = 9.0
    draws = [np.array([[20], [20], [20]]), np.array([[20], [20], [20]]), np.full((3, 1, 2), 10),
             np.array([0.5, 0.1, 0.9])]                         # keys -> perm [1, 0, 2]
    d = hard_views.hole_draws(FakeRng(*draws), 3, h, w, 1, with_perm=True)
    np.testing.assert_array_equal(d.perm.numpy(), [1, 0, 2])
    out = hard_views.cutmix(x, d).numpy()
    assert (out[0, 10:30, 10:30] == 2.0).all() and (out[1, 10:30, 10:30] == 1.0).all()
    np.testing.assert_array_equal(out[2], x[2])                  # perm(2) = 2: unchanged
    assert (out[0, 30:, :] == 1.0).all() and (out[0, :10] == 1.0).all()


def test_mixup_weight_is_one_minus_a_quarter_beta():
    x = np.stack([np.full((8, 8, 3), 4.0, np.float32), np.zeros((8, 8, 3), np.float32)])
    lam, perm = hard_views.mixup_draws(FakeRng(np.array([0.3, 0.1]), np.array([0.9, 0.2])), 2)
    assert abs(float(lam) - (1 - 0.75 / 4)) < 1e-6
    out = hard_views.mixup(x, lam, perm).numpy()
    np.testing.assert_allclose(out[0], 4.0 * float(lam))
    np.testing.assert_allclose(out[1], 4.0 * (1 - float(lam)))
    lams = [float(hard_views.mixup_draws(augment.StatelessRng([s, 0]), 4)[0]) for s in range(200)]
    assert min(lams) >= 0.75 and max(lams) <= 1.0 and np.mean(np.array(lams) > 0.95) > 0.3   # Beta(0.2, 0.2)


# ------------------------------------------------------------------------------ TA and YOCO (1.7)

def test_trivial_augment_levels_follow_the_spec():
    img = tf.constant(np.arange(64 * 48 * 3).reshape(64, 48, 3) % 256, tf.float32)
    solarize = augment.trivial_augment(img, FakeRng(np.int32(3), np.int32(15)))    # threshold 256 - 128
    np.testing.assert_array_equal(solarize.numpy(), np.where(img >= 128, 255 - img, img))
    poster = augment.trivial_augment(img, FakeRng(np.int32(5), np.int32(30)))      # 8 - 4 = 4 bits
    np.testing.assert_array_equal(poster.numpy(), (img.numpy().astype(int) >> 4) << 4)
    dark = augment.trivial_augment(img, FakeRng(np.int32(7), np.int32(0)))         # brightness 0.1
    np.testing.assert_array_equal(dark.numpy(), np.floor(img.numpy() * np.float32(0.1)))
    same = augment.trivial_augment(img, FakeRng(np.int32(0), np.int32(17)))
    np.testing.assert_array_equal(same.numpy(), img.numpy())


def test_yoco_takes_the_bottom_half_or_the_right_half():
    a, b = tf.zeros([6, 5, 3]), tf.ones([6, 5, 3])
    rows = augment.yoco(a, b, tf.constant(0.7)).numpy()[..., 0]
    assert (rows[3:] == 1).all() and (rows[:3] == 0).all()
    cols = augment.yoco(a, b, tf.constant(0.3)).numpy()[..., 0]
    assert (cols[:, 2:] == 1).all() and (cols[:, :2] == 0).all()


# ------------------------------------------------------------------------------ paths

def test_path_grammar():
    assert aug_paths.parse_path("JOCO") == aug_paths.Path("JOCO", None, ("JO", "CO"))
    assert aug_paths.parse_path("RA+JC+CM").ops == ("JC", "CM")
    assert aug_paths.parse_path("A60").ops == ()
    for bad in ("JC+RA", "XX", "JC+"):
        with pytest.raises(ValueError):
            aug_paths.parse_path(bad)
    assert aug_paths.path_labels([aug_paths.parse_path(p) for p in ("JOCO", "JO+CO", "JOCO")]) == \
        ["JOCO", "JO_CO", "JOCO_2"]
    with pytest.raises(config.ConfigError, match=r"method.paths\[1\]"):
        config.load("demo_dual", ["method.paths=[JC, CX]"])
    with pytest.raises(config.ConfigError, match="method.rand_aug"):
        config.load("demo_dual", ["method.paths=[JC]", "method.rand_aug=true"])


@pytest.mark.parametrize("method,paths,fix,want", [
    ("dual", ["CO"], False, [("CO", 5)]),                   # chain mode (one path): MASK_HOLES_NUM_CO
    ("dual", ["JCCM"], False, [("CM", 2)]),                 # chain mode: MASK_HOLES_NUM_CM
    ("dual", ["JC+CO+CM"], False, [("CO", 5), ("CM", 2)]),
    ("dual", ["CO", "JC"], False, [("CO", 4)]),             # multi mode: random_cutout's default
    ("dual", ["JOCO", "JCCM"], False, [("CO", 5), ("CM", 5)]),
    ("dual", ["JO+CO", "JC+CM"], False, [("CO", 5), ("CM", 2)]),
    ("cons", ["CO", "JCCM"], False, [("CO", 5), ("CM", 2)]),
    ("dual", ["CO", "JCCM"], True, [("CO", 5), ("CM", 2)]),
])
def test_hole_counts_follow_the_reference_table(monkeypatch, method, paths, fix, want):
    """Hole counts as MultiAugs PoseCotrain.forward uses them (docs/oddities.md), and fixes.hole_counts."""
    seen = []
    real = hard_views.hole_draws

    def spy(rng, b, h, w, holes, **kw):
        seen.append(("CM" if kw.get("with_perm") else "CO", holes))
        return real(rng, b, h, w, holes, **kw)

    monkeypatch.setattr(view_paths, "hole_draws", spy)            # where the paths look it up
    cfg = config.load(f"demo_{method}", [f"method.paths={paths}", f"fixes.hole_counts={str(fix).lower()}",
                                         "method.mask_joint_num=5"])
    n = 2 if method == "dual" else 1
    hm = [_heatmaps_at(np.full((2, 24, 2), 20), 24, 16)] * n
    unl = {"image": tf.ones([2, 96, 64, 3])}
    settings = view_paths.ViewSettings.from_config(cfg)
    views, targets = view_paths.build_views(settings, augment.StatelessRng([1, 1]), unl, hm, hm)
    assert len(views) == len(paths) and all(len(v) == n for v in views) and len(targets) == n
    assert seen == [x for x in want for _ in range(n)]


def test_views_are_cut_at_the_other_nets_joints_op_by_op(monkeypatch):
    """PoseDual: JO(v1), JO(v2), CO(v1), CO(v2); net 1's view placed by net 2's teacher."""
    calls = []
    real = view_paths.apply_op

    def spy(op, rng, x, teacher, *a, **kw):
        calls.append((op, int(np.argmax(np.asarray(teacher)[0, :, :, 0].ravel()))))
        return real(op, rng, x, teacher, *a, **kw)

    monkeypatch.setattr(view_paths, "apply_op", spy)
    cfg = config.load("demo_dual", ["method.paths=[JOCO]"])
    t1, t2 = _heatmaps_at(np.full((2, 24, 2), 4), 24, 16), _heatmaps_at(np.full((2, 24, 2), 40), 24, 16)
    view_paths.build_views(view_paths.ViewSettings.from_config(cfg), augment.StatelessRng([1, 1]),
                           {"image": tf.ones([2, 96, 64, 3])}, [t2, t1], [t1, t2])
    where1, where2 = 10 * 16 + 10, 1 * 16 + 1           # argmax index of net 2's and net 1's peaks
    assert calls == [("JO", where1), ("JO", where2), ("CO", where1), ("CO", where2)]


@pytest.mark.parametrize("align_corners", [False, True])
def test_views_and_targets_are_warped_as_torch_grid_sample_on_a_non_square_crop(align_corners):
    """The batch affine of a step (an A60 path: the easy view warped by theta) against PyTorch's own
    affine_grid + grid_sample (bilinear, zero padding) with the configured align_corners, on 64x48."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    cfg = config.load("coco1k_dual", ["data.image_size=[48,64]", "data.heatmap_size=[12,16]", "method.paths=[A60]",
                                      f"method.align_corners={str(align_corners).lower()}"])
    rng = np.random.default_rng(3)
    images = rng.normal(size=(3, 64, 48, 3)).astype(np.float32)
    maps = rng.uniform(size=(3, 16, 12, 24)).astype(np.float32)
    views, targets = view_paths.build_views(view_paths.ViewSettings.from_config(cfg), augment.StatelessRng([8, 2]), {"image": tf.constant(images)},
                                            [None, None], [tf.constant(maps)] * 2)
    # the step's theta: the path has no op, so the batch affine makes the RNG's first draws
    theta = augment.batch_affine_theta(augment.StatelessRng([8, 2]), 3, cfg.data.scale_factor, cfg.data.rot_factor,
                                       cfg.method.unsup_rot_prob).numpy()
    assert np.abs(theta[:, :, :2] - np.eye(2)).max() > 0.05          # a real warp, not the identity

    def torch_warp(x):
        t = torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())
        grid = F.affine_grid(torch.from_numpy(theta), list(t.shape), align_corners=align_corners)
        out = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
        return np.transpose(out.numpy(), (0, 2, 3, 1))

    for n in range(2):
        np.testing.assert_allclose(views[0][n].numpy(), torch_warp(images), atol=1e-4)
    np.testing.assert_allclose(targets[0].numpy(), torch_warp(maps), atol=1e-4)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.5])
def test_xla_gamma_draws_follow_the_gamma_distribution_and_compile(alpha):
    """MixUp's Beta(0.2, 0.2) comes from two Gamma(0.2) draws; our sampler (uniform and normal draws
    only) has the Gamma law (Kolmogorov-Smirnov against scipy on 20,000 draws) and compiles under XLA."""
    from scipy import stats

    draws = augment.StatelessRng([alpha * 10, 3]).gamma([20000], alpha).numpy()
    assert np.isfinite(draws).all() and (draws >= 0).all()
    assert stats.kstest(draws, stats.gamma(alpha).cdf).pvalue > 1e-3
    assert stats.kstest(draws, stats.gamma(alpha * 1.1).cdf).pvalue < 1e-3        # the test can tell
    lam = tf.function(lambda: hard_views.mixup_draws(augment.StatelessRng([1, 2]), 4)[0], jit_compile=True)()
    assert 0.75 <= float(lam) <= 1.0
