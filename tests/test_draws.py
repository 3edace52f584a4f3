"""Every probability and range a draw reads, tested by the statistics of what comes out.

Each setting is tried at a value and at 0 (never happens). What is measured comes from the outputs alone:
the geometry of a crop or view is fitted to the pixels of a coordinate ramp (an image whose red level is
its column and green level its row), holes and boxes are counted as connected regions, heads are told
apart elsewhere (tests/test_heads.py). The expected frequencies, atoms and distributions are written here
from the config's meaning (the reference's formulas: ``clip(N(0, 1) * f + 1, 1 - f, 1 + f)`` for the scale,
``clip(N(0, 1) * r, -2r, 2r)`` kept with probability p for the rotation, a fair coin for the flip,
``U{10..19}`` box half-sizes), never from the draw functions. Bounds are binomial at 4.5 standard
deviations or a Kolmogorov-Smirnov p-value of 1e-3, over fixed seeds.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage, stats

from posedual_tf import config
from posedual_tf.data import pipeline
from posedual_tf.data.settings import TrainDataSettings
from posedual_tf.data.view_paths import ViewSettings, build_views
from posedual_tf.data.augment import StatelessRng

#: the ramp image: 200 columns (red = x), 160 rows (green = y), blue 200 everywhere (inside the image)
RAMP_W, RAMP_H, INSIDE = 200, 160, 200
#: a non-square crop [W, H]
CROP = [48, 64]


def _ramp_png() -> bytes:
    img = np.zeros((RAMP_H, RAMP_W, 3), np.uint8)
    img[..., 0] = np.arange(RAMP_W)[None, :]
    img[..., 1] = np.arange(RAMP_H)[:, None]
    img[..., 2] = INSIDE
    return cv2.imencode(".png", img[..., ::-1])[1].tobytes()      # cv2 writes BGR


def _element(joints=None, vis=None, box=(70.0, 40.0, 60.0, 70.0)):
    j = np.zeros([24, 2], np.float32) if joints is None else np.asarray(joints, np.float32)
    v = np.zeros([24], np.float32) if vis is None else np.asarray(vis, np.float32)
    return {"encoded": tf.constant(_ramp_png()), "size": tf.constant([RAMP_H, RAMP_W], tf.int32),
            "box": tf.constant(box, tf.float32), "joints": tf.constant(j), "vis": tf.constant(v),
            "person": tf.constant(0, tf.int64)}


def _data(**kw) -> config.DataConfig:
    return dataclasses.replace(config.DataConfig(), image_size=list(CROP), heatmap_size=[12, 16], **kw)


def _fit(src_xy, dst_uv):
    """Least-squares affine ``[2, 3]`` with dst = A @ [src, 1]."""
    a = np.concatenate([src_xy, np.ones([len(src_xy), 1])], 1)
    sol, *_ = np.linalg.lstsq(a, dst_uv, rcond=None)
    return sol.T


def _crop_geometry(crop_bgr):
    """(scale in crop px per image px, rotation in degrees, flipped) of one crop of the ramp: the crop's
    pixel -> image point map fitted where every bilinear tap fell inside the image, then inverted."""
    c = crop_bgr.astype(np.float64)
    inside = c[..., 0] == INSIDE                       # the network's channel order: BGR (data.color_rgb false)
    v, u = np.nonzero(inside)
    assert len(u) > 50, "the crop left the ramp image"
    pixel_to_image = _fit(np.stack([u, v], 1), np.stack([c[v, u, 2], c[v, u, 1]], 1))
    forward = np.linalg.inv(pixel_to_image[:, :2])
    flipped = np.linalg.det(forward) < 0
    if flipped:
        forward = forward @ np.diag([-1.0, 1.0])
    k = math.sqrt(abs(np.linalg.det(forward)))
    return k, math.degrees(math.atan2(forward[1, 0], forward[0, 0])), flipped


def _geometry(parser_of, data, n, key="image", elem=None):
    """(scales, rotations, flips) of ``n`` crops made by ``parser_of(maker)`` from seeds 0..n-1."""
    maker = pipeline.SampleMaker(data)
    parse = parser_of(maker)
    elem = elem or _element()
    ds = tf.data.Dataset.range(n).map(lambda s: parse(elem, s)[key], num_parallel_calls=2).batch(256)
    fits = [_crop_geometry(c) for b in ds for c in b.numpy()]
    return tuple(np.array(x) for x in zip(*fits))


def _labelled(maker):
    return pipeline.labelled_parser(maker)


def _unlabelled(maker):
    return pipeline.unlabelled_parser(maker, config.MethodConfig(), np.ones([24], np.float32))


def _binomial_ok(hits, n, p, sds=4.5):
    return abs(hits - n * p) <= sds * math.sqrt(n * p * (1 - p)) + 1e-9


PHI = stats.norm.cdf
#: how far a scale fitted to a crop's rounded grey levels strays (measured: 1.4e-3 at most)
FIT = 3e-3


@pytest.mark.parametrize("parser_of", [_labelled, _unlabelled], ids=["labelled", "easy_view"])
def test_crop_rotation_scale_and_flip_follow_the_data_settings(parser_of):
    """The labelled crop and the unlabelled easy view: rotated with probability data.rot_prob by
    clip(N * rot_factor, +-2 rot_factor), scaled by clip(N * scale_factor + 1, 1 +- scale_factor), flipped
    with probability 1/2 when data.flip, on a 48x64 crop."""
    n = 1200
    base_k, base_r, base_f = _geometry(parser_of, _data(scale_factor=0.0, rot_factor=0.0, flip=False), 40)
    assert np.ptp(base_k) < 1e-3 and np.abs(base_r).max() < 0.05 and not base_f.any()
    k0 = float(np.median(base_k))
    # scale 0.25, rotation 30 degrees with probability 0.6, flips
    k, rot, flip = _geometry(parser_of, _data(scale_factor=0.25, rot_factor=30.0, rot_prob=0.6, flip=True), n)
    rotated = np.abs(rot) > 0.05
    assert _binomial_ok(rotated.sum(), n, 0.6), rotated.mean()
    assert _binomial_ok(flip.sum(), n, 0.5), flip.mean()
    r = rot[rotated]
    assert np.abs(r).max() <= 60.0 + 0.1
    at_bound = np.abs(np.abs(r) - 60.0) < 0.1
    assert _binomial_ok(at_bound.sum(), len(r), 2 * (1 - PHI(2.0))), at_bound.mean()     # 4.6 % clipped
    assert stats.kstest(r[~at_bound], stats.truncnorm(-2, 2, scale=30.0).cdf).pvalue > 1e-3
    mult = k0 / k                                   # the crop covers mult times the box: the drawn scale
    assert mult.min() >= 0.75 - FIT and mult.max() <= 1.25 + FIT
    clipped = (np.abs(mult - 0.75) < FIT) | (np.abs(mult - 1.25) < FIT)
    assert _binomial_ok(clipped.sum(), n, 2 * (1 - PHI(1.0))), clipped.mean()           # 31.7 % clipped
    assert stats.kstest(mult[~clipped], stats.truncnorm(-1, 1, loc=1.0, scale=0.25).cdf).pvalue > 1e-3
    # the other side of each setting: rot_prob 0 never rotates, flip false never flips
    k, rot, flip = _geometry(parser_of, _data(scale_factor=0.25, rot_factor=30.0, rot_prob=0.0, flip=False), 300)
    assert np.abs(rot).max() < 0.05 and not flip.any()
    assert np.ptp(k0 / k) > 0.4                      # the scale is still drawn


def test_half_body_fires_with_its_probability():
    """data.prob_half_body: the crop moves to the upper or lower body's joints with that probability when
    more than data.num_joints_half_body joints are visible; never at 0, never with fewer visible joints; the
    upper body with probability P(N(0, 1) < 0.5) = 0.69 (the reference's coin)."""
    rng = np.random.default_rng(0)
    joints = np.stack([rng.uniform(75, 125, 24), rng.uniform(45, 105, 24)], 1)
    elem = _element(joints, np.ones(24), box=(40.0, 20.0, 120.0, 120.0))   # the joints' halves are far smaller
    k0 = None
    # num_joints_half_body 24: fires only with more than 24 visible joints, never here
    for p, n, least in ((0.0, 300, 8), (0.3, 900, 8), (0.3, 300, 24)):
        k, _, _ = _geometry(_labelled, _data(scale_factor=0.0, rot_factor=0.0, flip=False, prob_half_body=p,
                                             num_joints_half_body=least), n, elem=elem)
        if k0 is None:
            k0 = k[0]
        fired = np.abs(k - k0) > 1e-3 * k0
        if p == 0.0 or least == 24:
            assert not fired.any() and np.ptp(k) < 1e-3
        else:
            assert _binomial_ok(fired.sum(), n, p), fired.mean()
            # which half: the upper body (union ids 7-23) when a standard normal draw is below 0.5, the
            # lower otherwise; told apart by the crop's scale, 48 px over 1.5 x the half's 3:4 box width
            def k_of(ids):
                span = joints[ids].max(0) - joints[ids].min(0)
                width = max(span[0], span[1] * 0.75)
                return CROP[0] / (1.5 * width)

            k_up, k_low = k_of(list(range(7, 24))), k_of(list(range(7)))
            upper = np.abs(k[fired] - k_up) < 1e-2 * k_up
            assert (upper | (np.abs(k[fired] - k_low) < 1e-2 * k_low)).all()
            assert _binomial_ok(upper.sum(), fired.sum(), PHI(0.5)), upper.mean()


@pytest.mark.parametrize("sampling", ["auto", "permutation"])
def test_labelled_people_of_a_mixed_epoch_are_drawn_as_data_labelled_sampling_says(sampling, coco_records,
                                                                                    det_records):
    """Beside 118 unlabelled people, the 12 labelled ones are drawn uniformly with replacement (``auto``, the
    reference: counts spread as a multinomial's) or as back-to-back permutations (each 9 or 10 times)."""
    cfg = config.load("coco1k_dual", [f"data.labelled.records={coco_records}", f"data.unlabelled.records={det_records}",
                                      "data.image_size=[48,64]", "data.heatmap_size=[12,16]", "train.batch_size=59",
                                      f"data.labelled_sampling={sampling}"])
    settings = TrainDataSettings.from_config(cfg)
    people = np.concatenate([lab["person"].numpy() for lab, _ in pipeline.train_dataset(settings).take(2)])
    assert len(people) == 118
    counts = np.bincount(people, minlength=12)
    assert len(counts) == 12
    if sampling == "permutation":
        assert sorted(set(counts.tolist())) == [9, 10]
    else:
        assert np.ptp(counts) > 1 and stats.chisquare(counts).pvalue > 1e-3, counts


# ------------------------------------------------------------------------------ the hard view's batch affine

def _coordinate_views(cfg_sets, b=1500, h=64, w=48, seed=(5, 6)):
    cfg = config.load("demo_cons", cfg_sets)
    views = ViewSettings.from_config(cfg)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    ramp = np.stack([xs, ys, np.ones_like(xs)], -1)
    unl = {"image": tf.constant(np.broadcast_to(ramp, (b, h, w, 3)))}
    out, _ = build_views(views, StatelessRng(list(seed)), unl, [None], [tf.zeros([b, h // 4, w // 4, 1])])
    return out[0][0].numpy(), cfg


def _thetas(view):
    """The affine_grid theta of each warped coordinate ramp: its pixel map, normalised as affine_grid
    normalises (align_corners false: x_n = (2 x + 1) / W - 1)."""
    b, h, w, _ = view.shape
    d = np.diag([w / 2.0, h / 2.0])
    out = []
    for v in view:
        inside = v[..., 2] > 0.9999
        rr, cc = np.nonzero(inside)
        pixel_map = _fit(np.stack([cc, rr], 1), np.stack([v[rr, cc, 0], v[rr, cc, 1]], 1))
        out.append(np.linalg.inv(d) @ pixel_map[:, :2] @ d)
    return np.stack(out)


def test_hard_view_affine_follows_method_unsup_rot_prob_and_the_data_ranges():
    """The hard view's per-sample affine: rotated with probability method.unsup_rot_prob (not the easy
    view's data.rot_prob), by clip(N * rot_factor, +-2 rot_factor), scaled by clip(N * scale_factor + 1, ...),
    read off the warped coordinates of a 48x64 view; unsup_rot_prob 0 never rotates and unsup_transform
    false leaves the view alone."""
    n = 1500
    view, cfg = _coordinate_views(["method.unsup_rot_prob=0.8", "data.rot_prob=0.3", "data.rot_factor=30",
                                   "data.scale_factor=0.25"], b=n)
    theta = _thetas(view)
    s = np.sqrt(np.linalg.det(theta))
    rot = np.degrees(np.arctan2(theta[:, 0, 1], theta[:, 0, 0]))
    rotated = np.abs(rot) > 0.05
    assert _binomial_ok(rotated.sum(), n, 0.8), rotated.mean()
    r = rot[rotated]
    at_bound = np.abs(np.abs(r) - 60.0) < 0.1
    assert np.abs(r).max() <= 60.1 and _binomial_ok(at_bound.sum(), len(r), 2 * (1 - PHI(2.0)))
    assert stats.kstest(r[~at_bound], stats.truncnorm(-2, 2, scale=30.0).cdf).pvalue > 1e-3
    clipped = (np.abs(s - 0.75) < 1e-3) | (np.abs(s - 1.25) < 1e-3)
    assert s.min() >= 0.749 and s.max() <= 1.251
    assert _binomial_ok(clipped.sum(), n, 2 * (1 - PHI(1.0))), clipped.mean()
    assert stats.kstest(s[~clipped], stats.truncnorm(-1, 1, loc=1.0, scale=0.25).cdf).pvalue > 1e-3
    view, _ = _coordinate_views(["method.unsup_rot_prob=0.0", "data.rot_prob=1.0", "data.scale_factor=0.25"], b=300)
    theta = _thetas(view)
    assert np.abs(theta[:, 0, 1]).max() < 1e-3 and np.ptp(np.sqrt(np.linalg.det(theta))) > 0.4
    view, _ = _coordinate_views(["method.unsup_transform=false"], b=20)
    xs, ys = np.meshgrid(np.arange(48), np.arange(64))
    np.testing.assert_array_equal(view[..., 0], np.broadcast_to(xs, view.shape[:3]))
    np.testing.assert_array_equal(view[..., 1], np.broadcast_to(ys, view.shape[:3]))


# ------------------------------------------------------------------------------ boxes and holes: counts, sizes

H_BIG, W_BIG = 480, 400          # large enough that boxes rarely touch, non-square


def _regions(mask):
    """Per image: the number of connected regions, and the (height, width) of each rectangular region
    away from the borders."""
    counts, sizes = [], []
    for m in mask:
        lab, k = ndimage.label(m)
        counts.append(k)
        for sl in ndimage.find_objects(lab):
            hh, ww = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            away = sl[0].start > 0 and sl[1].start > 0 and sl[0].stop < m.shape[0] and sl[1].stop < m.shape[1]
            if away and m[sl].all():
                sizes.append((hh, ww))
    return np.array(counts), np.array(sizes)


def _path_view(sets, images, teacher=None, seed=(3, 9)):
    cfg = config.load("demo_cons", ["method.unsup_transform=false", *sets])
    views = ViewSettings.from_config(cfg)
    b = images.shape[0]
    teacher = tf.zeros([b, H_BIG // 4, W_BIG // 4, 24]) if teacher is None else teacher
    out, _ = build_views(views, StatelessRng(list(seed)), {"image": tf.constant(images)}, [teacher], [teacher])
    return out[0][0].numpy()


def _check_sizes(sizes):
    """Box sides are 2 x U{10..19}: every even side from 20 to 38, each about as often."""
    sides = np.concatenate([sizes[:, 0], sizes[:, 1]])
    assert set(sides.tolist()) == set(range(20, 39, 2)), sorted(set(sides.tolist()))
    counts = np.bincount(sides)[20::2]
    assert stats.chisquare(counts).pvalue > 1e-3, counts


@pytest.mark.parametrize("op,setting", [("CO", "method.co_holes"), ("CM", "method.cm_holes")])
def test_cutout_and_cutmix_cut_as_many_holes_as_set_with_the_reference_sizes(op, setting):
    """CO (zero holes) and CM (holes filled from a batch-mate): method.co_holes / cm_holes holes per image,
    sides 2 x U{10..19}; 0 holes leave the view alone."""
    b = 96
    images = np.broadcast_to((np.arange(b, dtype=np.float32) + 1.0)[:, None, None, None], (b, H_BIG, W_BIG, 3))
    sets = [f"method.paths=[{op}]", "fixes.hole_axes=true", "fixes.hole_counts=true"]
    none = _path_view(sets + [f"{setting}=0"], images)
    np.testing.assert_array_equal(none, images)
    out = _path_view(sets + [f"{setting}=3"], images)
    counts, sizes = _regions(out[..., 0] != images[..., 0])
    # overlaps merge a few; CutMix from itself (1 in 96 partners) shows nothing
    assert counts.max() <= 3 and 2.75 <= counts.mean() <= 3.0, counts.mean()
    _check_sizes(sizes)


def _grid_teacher(b):
    """Teacher heatmaps whose 24 joints sit on a grid 80 px apart (x 40-360, y 40-360)."""
    hm = np.zeros([b, H_BIG // 4, W_BIG // 4, 24], np.float32)
    for j in range(24):
        x, y = 40 + 80 * (j % 5), 40 + 80 * (j // 5)
        hm[:, y // 4, x // 4, j] = 1.0
    return tf.constant(hm)


def test_joint_cutout_cuts_mask_joint_num_draws_of_the_24_joints():
    """JC: method.mask_joint_num boxes drawn with replacement among the 24 joints (the reference), so
    24 (1 - (23/24)^K) distinct boxes on average, sides 2 x U{10..19}; 0 boxes leave the view alone."""
    b = 400
    images = np.ones([b, H_BIG, W_BIG, 3], np.float32)
    teacher = _grid_teacher(b)
    sets = ["method.paths=[JC]", "fixes.cutout_axes=true"]
    np.testing.assert_array_equal(_path_view(sets + ["method.mask_joint_num=0"], images, teacher), images)
    out = _path_view(sets + ["method.mask_joint_num=3"], images, teacher)
    counts, sizes = _regions(out[..., 0] == 0)
    expected = 24 * (1 - (23 / 24) ** 3)             # 2.875
    assert counts.max() <= 3 and abs(counts.mean() - expected) <= 0.1, counts.mean()
    _check_sizes(sizes)


def test_joint_cut_occlusion_pastes_jo_joint_num_patches():
    """JO: method.jo_joint_num patches per image, at joints drawn with replacement (24 (1 - (23/24)^K)
    distinct places), from a batch-mate drawn uniformly (itself 1 time in the batch size: nothing shows);
    0 patches leave the view alone."""
    b = 96
    images = np.broadcast_to((np.arange(b, dtype=np.float32) + 1.0)[:, None, None, None], (b, H_BIG, W_BIG, 3))
    teacher = _grid_teacher(b)
    sets = ["method.paths=[JO]", "fixes.jo_axes=true", "fixes.jo_boxes=true"]
    np.testing.assert_array_equal(_path_view(sets + ["method.jo_joint_num=0"], images, teacher), images)
    out = _path_view(sets + ["method.jo_joint_num=2"], images, teacher)
    counts, _ = _regions(out[..., 0] != images[..., 0])
    expected = 24 * (1 - (23 / 24) ** 2) * (1 - 1 / b)
    assert counts.max() <= 2 and abs(counts.mean() - expected) <= 0.2, counts.mean()


# ------------------------------------------------------------------------------ RandAugment, TrivialAugment

def _fixed_copies(method, key, n):
    """The easy view (the same crop every time: no scale, rotation or flip) and ``n`` copies ``key`` made
    from it by the unlabelled parser with ``method``'s settings."""
    maker = pipeline.SampleMaker(_data(scale_factor=0.0, rot_factor=0.0, flip=False))
    parse = pipeline.unlabelled_parser(maker, method, np.ones([24], np.float32))
    elem = _element()
    ds = tf.data.Dataset.range(n).map(lambda s: parse(elem, s), num_parallel_calls=2).batch(500)
    views, copies = [], []
    for b in ds:
        views.append(b["image"].numpy())
        copies.append(b[key].numpy())
    views, copies = np.concatenate(views), np.concatenate(copies)
    assert (views == views[0]).all()
    return views[0], copies


def _classes(outputs, candidates, weights):
    """Group the candidate outputs that are equal (on this image two draws can give the same pixels), and
    give each sample's output its group: (observed counts per group, expected probability per group);
    group -1 = matches no candidate."""
    keys = [c.tobytes() for c in candidates]
    group_of, prob = {}, []
    for k, w in zip(keys, weights):
        if k not in group_of:
            group_of[k] = len(prob)
            prob.append(0.0)
        prob[group_of[k]] += w
    observed = np.zeros(len(prob), np.int64)
    unmatched = []
    for i, o in enumerate(outputs):
        g = group_of.get(o.tobytes())
        if g is None:
            unmatched.append(i)
        else:
            observed[g] += 1
    return observed, np.array(prob), unmatched


def test_rand_augment_draws_each_of_its_11_ops_and_both_signs_evenly():
    """method.rand_aug: each of RandAugment's 11 ops with probability 1/11, the enhancers' factor 1 - v or
    1 + v with 1/2 each (a random cutout, the 11th op, is told by its fill colour); rand_aug_num_ops 0
    leaves the copy equal to the easy view."""
    from posedual_tf.data import augment

    base = config.MethodConfig(rand_aug=True, rand_magnitude=10)
    view, copies = _fixed_copies(dataclasses.replace(base, rand_aug_num_ops=0), "image_RA", 20)
    np.testing.assert_array_equal(copies, np.broadcast_to(view, copies.shape))
    n = 1100
    view, copies = _fixed_copies(dataclasses.replace(base, rand_aug_num_ops=1), "image_RA", n)
    x = tf.constant(view, tf.float32)
    rng = StatelessRng([0, 0])          # only the cutout reads it, and the cutout is not a candidate
    candidates, weights = [], []
    for op in range(10):                # every op but CutoutAbs
        for negative in (False, True):
            out = augment.rand_augment_op(tf.constant(op), x, 10, tf.constant(negative), rng)
            candidates.append(tf.cast(out, tf.uint8).numpy())
            weights.append(1 / 22)
    observed, prob, unmatched = _classes(copies, candidates, weights)
    fill = np.array(augment.CUTOUT_FILL, np.uint8)
    for i in unmatched:                 # a cutout: the pixels it changed all hold the fill colour
        changed = (copies[i] != view).any(-1)
        assert changed.any() and (copies[i][changed] == fill).all(), i
    observed = np.append(observed, len(unmatched))
    prob = np.append(prob, 1 / 11)
    assert abs(prob.sum() - 1) < 1e-9 and (n * prob >= 10).all()
    assert (observed > 0).all(), observed
    assert stats.chisquare(observed, n * prob).pvalue > 1e-3, (observed, n * prob)


def test_trivial_augment_draws_each_of_its_9_ops_and_31_levels_evenly():
    """A TA path's copy: one of TrivialAugment's 9 ops with probability 1/9, its level uniform on 0..30
    (grouped where two draws give the same pixels on this image: every group seen, frequencies by
    chi-square); without a TA path there is no copy."""
    from posedual_tf.data import augment

    view, copies = _fixed_copies(config.MethodConfig(paths=["TA"]), "image_TA", 3100)
    x = tf.constant(view, tf.float32)
    candidates = [tf.cast(augment.trivial_augment_op(tf.constant(op), tf.constant(level), x), tf.uint8).numpy()
                  for op in range(9) for level in range(31)]
    observed, prob, unmatched = _classes(copies, candidates, [1 / 279] * 279)
    assert not unmatched
    assert (observed > 0).all(), observed
    assert stats.chisquare(observed, len(copies) * prob).pvalue > 1e-3
    maker = pipeline.SampleMaker(_data())
    out = pipeline.unlabelled_parser(maker, config.MethodConfig(paths=["CO"]), np.ones([24], np.float32))(
        _element(), tf.constant(1, tf.int64))
    assert not any(k.startswith("image_") for k in out)


def test_yoco_stitches_rows_or_columns_with_even_odds():
    """A YOCOTA path's copy: two TrivialAugment copies of the view, the second one's bottom half (rows) or
    right half (columns) over the first, each half the time (told apart where the two copies differ)."""
    from posedual_tf.data import augment

    view, copies = _fixed_copies(config.MethodConfig(paths=["YOCOTA"]), "image_YOCOTA", 600)
    x = tf.constant(view, tf.float32)
    cands = [tf.cast(augment.trivial_augment_op(tf.constant(op), tf.constant(level), x), tf.uint8).numpy()
             for op in range(9) for level in range(31)]
    h, w = view.shape[0] // 2, view.shape[1] // 2
    halves = {name: {cut(c).tobytes() for c in cands} for name, cut in (
        ("top", lambda c: c[:h]), ("bottom", lambda c: c[h:]), ("left", lambda c: c[:, :w]), ("right", lambda c: c[:, w:]))}
    rows = np.array([o[:h].tobytes() in halves["top"] and o[h:].tobytes() in halves["bottom"] for o in copies])
    cols = np.array([o[:, :w].tobytes() in halves["left"] and o[:, w:].tobytes() in halves["right"] for o in copies])
    assert (rows | cols).all()
    told = rows != cols
    assert told.sum() > 300
    assert _binomial_ok(rows[told].sum(), told.sum(), 0.5), rows[told].mean()
