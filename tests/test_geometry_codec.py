"""Geometry, heatmap targets, batch affine, joint cutout and decoding against independent formulas."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import codec, geometry, joints
from posedual_tf.data import augment

from tests.conftest import union_flip_perm


def _ref_targets(jts, vis, image_size, hm_size, sigma):
    """The reference target rule, written out with numpy (reference JointsDataset.generate_target)."""
    w, h = hm_size
    stride = np.array(image_size) / np.array(hm_size)
    target = np.zeros((len(jts), h, w), np.float32)
    weight = np.array(vis, np.float32).copy()
    tmp = sigma * 3
    for j, (x, y) in enumerate(jts):
        mu_x, mu_y = int(x / stride[0] + 0.5), int(y / stride[1] + 0.5)
        ul = [int(mu_x - tmp), int(mu_y - tmp)]
        br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weight[j] = 0
            continue
        size = int(2 * tmp + 1)
        xs = np.arange(0, size, 1, np.float32)
        ys = xs[:, None]
        g = np.exp(-((xs - size // 2) ** 2 + (ys - size // 2) ** 2) / (2 * sigma ** 2))
        gx = max(0, -ul[0]), min(br[0], w) - ul[0]
        gy = max(0, -ul[1]), min(br[1], h) - ul[1]
        ix = max(0, ul[0]), min(br[0], w)
        iy = max(0, ul[1]), min(br[1], h)
        if weight[j] > 0.5:
            target[j, iy[0]:iy[1], ix[0]:ix[1]] = g[gy[0]:gy[1], gx[0]:gx[1]]
    return target.transpose(1, 2, 0), weight


@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_targets_match_reference_formula_including_borders(sigma):
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-40, 230, (40, 2)),
                          [[-1.9, 10], [-2.1, 10], [-30, 50], [191.9, 255.9], [200, 100], [-25.9, -25.9],
                           [220, 280], [0, 0], [96.2, 128.6]]])
    vis = (rng.uniform(size=len(pts)) > 0.15).astype(np.float32)
    got, w = codec.encode_heatmaps(pts, vis, (192, 256), (48, 64), sigma)
    want, ww = _ref_targets(pts, vis, (192, 256), (48, 64), sigma)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    np.testing.assert_array_equal(w.numpy(), ww)
    assert 0 < ww.sum() < len(pts)  # some joints really fall outside


def test_in_graph_crop_matches_cv2(shared):
    img = cv2.imread(str(shared / "coco/000000196141.jpg"))
    for box, rot, sf in [([150, 60, 120, 260], 0.0, 1.0), ([300, 20, 80, 200], 35.0, 1.2), ([0, 0, 300, 400], -50.0, 0.8)]:
        c, s = geometry.box_to_center_scale(box, 0.75)
        s = s * sf
        m = geometry.get_affine_transform(c, s, rot, (192, 256))
        want = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR).astype(np.float32)
        got = geometry.tf_crop(tf.constant(img), tf.constant(c), tf.constant(s), tf.constant(rot, tf.float32),
                               (192, 256)).numpy()
        # cv2 interpolates at 1/32 px in fixed point: a few grey levels on sharp edges, nowhere more
        err = np.abs(got - want)
        assert err.max() <= 6.0 and err.mean() < 0.35, (err.max(), err.mean())
        # the numpy and in-graph matrices agree, and the inverse is exact
        mt = geometry.tf_affine_matrix(c[None], s[None], [rot], (192, 256))[0].numpy()
        np.testing.assert_allclose(mt, m, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(geometry.affine_transform_points(geometry.affine_transform_points([c], m),
                                                                    geometry.invert_affine(m)), [c], atol=1e-6)
        np.testing.assert_allclose(geometry.affine_transform_points([c], m), [[96, 128]], atol=1e-4)


def test_box_to_center_scale_reference_rule():
    c, s = geometry.box_to_center_scale([10, 20, 60, 40], 0.75)
    np.testing.assert_allclose(c, [40, 40])
    np.testing.assert_allclose(s, np.array([60, 80]) / 200 * 1.25)
    ct, st = geometry.tf_box_to_center_scale([[10, 20, 60, 40], [0, 0, 10, 100]], 0.75)
    np.testing.assert_allclose(st.numpy()[0], s, rtol=1e-6)
    np.testing.assert_allclose(st.numpy()[1], np.array([75, 100]) / 200 * 1.25, rtol=1e-6)


def _ref_grid_sample(img, theta, align_corners=False):
    """affine_grid + grid_sample (bilinear, zeros) written out per pixel; img [H, W, C]."""
    h, w, _ = img.shape
    out = np.zeros_like(img, np.float64)
    for i in range(h):
        for j in range(w):
            if align_corners:
                xn, yn = 2 * j / (w - 1) - 1, 2 * i / (h - 1) - 1
            else:
                xn, yn = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
            xs = theta[0, 0] * xn + theta[0, 1] * yn + theta[0, 2]
            ys = theta[1, 0] * xn + theta[1, 1] * yn + theta[1, 2]
            if align_corners:
                x, y = (xs + 1) * (w - 1) / 2, (ys + 1) * (h - 1) / 2
            else:
                x, y = ((xs + 1) * w - 1) / 2, ((ys + 1) * h - 1) / 2
            x0, y0 = math.floor(x), math.floor(y)
            for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    if 0 <= xx < w and 0 <= yy < h:
                        out[i, j] += wx * wy * img[yy, xx]
    return out


@pytest.mark.parametrize("align_corners", [False, True])
def test_batch_affine_matches_affine_grid_formula(align_corners):
    rng = np.random.default_rng(1)
    hm = rng.uniform(size=(2, 16, 12, 3)).astype(np.float32)
    theta = augment.batch_affine_theta(augment.StatelessRng([3, 4]), 2, rot_prob=1.0).numpy()
    got = augment.affine_grid_warp(hm, theta, align_corners).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], _ref_grid_sample(hm[b], theta[b], align_corners), atol=1e-5)
    s = np.sqrt(np.linalg.det(theta[:, :, :2]))
    assert ((s >= 0.75 - 1e-6) & (s <= 1.25 + 1e-6)).all()


# ------------------------------------------------------------------------------ decoding

def _gaussian(h, w, x, y, sigma=2.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_decode_recovers_subpixel_positions():
    rng = np.random.default_rng(2)
    pts = rng.uniform([4, 4], [44, 60], (24, 2))
    hm = np.stack([_gaussian(64, 48, x, y) for x, y in pts], -1)[None]
    center = np.array([[24.0, 32.0]])          # heatmap frame == image frame: s_x = w / 200
    scale = np.array([[48 / 200, 64 / 200]])
    for method, tol in (("dark", 0.05), ("shift", 0.25 + 1e-6)):
        coords, maxvals = codec.decode_heatmaps(hm, center, scale, None, method)
        err = np.abs(coords.numpy()[0] - pts).max()
        assert err <= tol, (method, err)
    coords, _ = codec.decode_heatmaps(hm, center, scale, None, "none")
    np.testing.assert_array_equal(coords.numpy()[0], np.round(pts))


def test_argmax_zeroes_nonpositive_maps_and_shift_bound():
    hm = np.zeros((1, 8, 8, 2), np.float32)
    hm[0, 1, 1, 1] = 1.0
    hm[0, 1, 2, 1] = 0.5
    coords, maxvals = codec.argmax_coords(hm)
    np.testing.assert_array_equal(coords.numpy()[0], [[0, 0], [1, 1]])
    assert maxvals.numpy()[0, 0] == 0.0
    # p = 1 is excluded by the reference bound, included by the fix
    np.testing.assert_array_equal(codec.shift_refine(hm, coords).numpy()[0, 1], [1, 1])
    np.testing.assert_array_equal(codec.shift_refine(hm, coords, wide_bound=True).numpy()[0, 1], [1.25, 1.0])


def test_rotated_crop_decodes_back_to_image_joint():
    joint = np.array([[310.0, 140.0]])
    c, s = geometry.box_to_center_scale([250, 60, 120, 260], 0.75)
    for rot in (0.0, 30.0, -45.0):
        m = geometry.get_affine_transform(c, s, rot, (48, 64))       # straight to heatmap resolution
        hx, hy = geometry.affine_transform_points(joint, m)[0]
        hm = _gaussian(64, 48, hx, hy)[..., None]
        coords, _ = codec.decode_heatmaps(hm[None], c[None], s[None], np.array([rot], np.float32), "dark")
        np.testing.assert_allclose(coords.numpy()[0, 0], joint[0], atol=0.05 * 200 * s[0] / 48 + 1e-3)


def test_flip_back_maps_each_joint_to_its_partner():
    rng = np.random.default_rng(3)
    hm = np.zeros((1, 16, 12, 24), np.float32)
    pos = {}
    for u in range(24):
        x, y = int(rng.integers(1, 11)), int(rng.integers(0, 16))
        hm[0, y, x, u] = 1.0
        pos[u] = (x, y)
    # what a network would output for the mirrored input: mirrored maps with left/right swapped
    mirrored = hm[:, :, ::-1, :][..., union_flip_perm()]     # pairs by name
    back = codec.flip_back(mirrored, shift_heatmap=False).numpy()
    np.testing.assert_allclose(back[..., :, 1:, :], 0.25 * hm[..., :, 1:, :] + 0.75 * hm[..., :, :-1, :], atol=1e-7)
    shifted = codec.flip_back(mirrored, shift_heatmap=True).numpy()
    for u, (x, y) in pos.items():
        assert shifted[0, y, x + 1, u] == 1.0
    jts = np.array([[10.0, 5.0]] * 24)
    jts[14] = [30.0, 7.0]
    fj, fv = codec.flip_joints(jts, np.ones(24), 100, joints.UNION_FLIP_PAIRS)
    np.testing.assert_allclose(fj.numpy()[17], [100 - 1 - 30.0, 7.0])
    # the training flip swaps exactly the pairs written by name in the tests
    np.testing.assert_array_equal(joints.union_flip_permutation(), union_flip_perm())


@pytest.mark.parametrize("size", [(192, 256), (48, 64)])
def test_xla_gather_warp_equals_the_projective_transform_and_compiles(size):
    """The batch warp's gathers equal ImageProjectiveTransformV3 (bilinear, zero fill) to float rounding,
    at 256x192 and 64x48, with samples inside, across and outside the image; and compile under XLA."""
    w, h = size
    rng = np.random.default_rng(1)
    images = tf.constant(rng.uniform(0, 255, size=(4, h, w, 5)).astype(np.float32))
    theta = augment.batch_affine_theta(augment.StatelessRng([4, 2]), 4, 0.35, 45.0, 1.0)
    theta = tf.concat([theta[:, :, :2], tf.constant([[[0.3], [-0.2]]] * 4, tf.float32)], axis=-1)   # a shift
    inv = augment.theta_to_pixel_map(theta, size)
    want = geometry.tf_warp(images, inv, size).numpy()
    got = geometry.tf_gather_warp(images, inv, size).numpy()
    assert (want == 0).mean() > 0.05 and (want != 0).mean() > 0.5          # both regions present
    np.testing.assert_allclose(got / 255.0, want / 255.0, atol=1e-4)
    compiled = tf.function(lambda x, t: augment.affine_grid_warp(x, t), jit_compile=True)
    np.testing.assert_allclose(compiled(images, theta).numpy() / 255.0, want / 255.0, atol=1e-4)


def test_grey_levels_are_put_in_the_network_order_by_the_permutation_as_by_a_reverse():
    levels = tf.constant(np.random.default_rng(3).integers(0, 256, (2, 5, 4, 3)).astype(np.float32))
    bgr = codec.InputNormaliser((0.5,) * 3, (0.25,) * 3, color_rgb=False)
    got = bgr.to_model_order(levels, levels=True)
    assert got.shape == levels.shape
    np.testing.assert_array_equal(got.numpy(), levels.numpy()[..., ::-1])
    np.testing.assert_array_equal(bgr.to_model_order(levels).numpy(), levels.numpy()[..., ::-1])
    rgb = codec.InputNormaliser((0.5,) * 3, (0.25,) * 3, color_rgb=True)
    np.testing.assert_array_equal(rgb.to_model_order(levels, levels=True).numpy(), levels.numpy())
