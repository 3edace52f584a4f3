"""net 1, net 2 and the ensemble told apart: networks with different fixed heatmaps give the decode of
each, and of their mean, in evaluation, the SavedModel, predict and TFLite.

Two kinds of networks: Keras models that ignore their input and return fixed heatmaps with single peaks at
different places and heights (net 1: 1.0 at A, net 2: 0.6 at B; their mean peaks at A with 0.5), and real
PoseDual networks whose final convolution is set to a constant (net 1: 0.8, net 2: 0.3; mean 0.55),
saved as a checkpoint, so that every path that picks networks out of a checkpoint is covered too.
The expected keypoints are written here: heatmap px -> image by the box (x = p * 200 s / w + c - 100 s).
"""
from __future__ import annotations


import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import checkpoints, codec, config, joints
from posedual_tf.evaluation import runner
from posedual_tf.models import builder

from tests.conftest import EXPORT_SETS

#: EXPORT_SETS: 96x128 crops, 24x32 heatmaps (non-square); A and B are (x, y) heatmap pixels
W, H, HW, HH = 96, 128, 24, 32
A, B = (5, 20), (17, 9)
PEAK = {"net1": 1.0, "net2": 0.6}


class FixedHeatmaps(keras.Model):
    """A network whose heatmaps do not depend on its input: ``value`` at pixel ``at`` for every joint."""

    def __init__(self, at, value, **kw):
        super().__init__(**kw)
        hm = np.zeros([HH, HW, 24], np.float32)
        hm[at[1], at[0], :] = value
        self.hm = tf.constant(hm)

    def call(self, x, training=False):
        return tf.tile(self.hm[None], [tf.shape(x)[0], 1, 1, 1])


def _fixed_nets():
    return [FixedHeatmaps(A, PEAK["net1"], name="net1"), FixedHeatmaps(B, PEAK["net2"], name="net2")]


def _cfg(*extra):
    return config.load("coco1k_dual", [*EXPORT_SETS, "test.flip_test=false", "test.post_process=shift", *extra])


def _to_image(p, center, scale):
    size = np.asarray(scale, np.float64) * 200.0
    return np.asarray(p, np.float64) * size / [HW, HH] + np.asarray(center) - size / 2


def _eval_batch(center, scale):
    """An evaluation batch of people at ``center`` / ``scale`` (``[N, 2]``) with blank crops."""
    n = len(center)
    return tf.data.Dataset.from_tensors({
        "image": tf.zeros([n, H, W, 3]), "center": np.float32(center), "scale": np.float32(scale),
        "score": np.ones(n, np.float32), "image_id": np.arange(n), "ann_id": np.arange(n),
        "area": np.ones(n, np.float32), "raw_box": np.zeros([n, 4], np.float32)})


#: each head: (heatmap pixel, peak value) that its decode must give
WANT = {"net1": (A, 1.0), "net2": (B, 0.6), "ensemble": (A, 0.5)}


def test_evaluation_decodes_each_net_and_the_mean_of_both():
    nets = _fixed_nets()
    cfg = _cfg()
    heatmaps = codec.HeatmapCodec.from_config(cfg)
    center = np.array([[120.0, 90.0], [300.0, 250.0]], np.float32)
    scale = np.array([[0.9, 1.2], [1.5, 2.0]], np.float32)
    out = runner.predict(heatmaps, nets, _eval_batch(center, scale), progress=False)
    assert sorted(out) == ["ensemble", "net1", "net2"]
    for head, (at, peak) in WANT.items():
        for b, inst in enumerate(out[head]):
            np.testing.assert_allclose(inst["keypoints"][:, 2], peak, rtol=1e-6, err_msg=head)
            np.testing.assert_allclose(inst["keypoints"][:, :2], np.tile(_to_image(at, center[b], scale[b]), (24, 1)),
                                       atol=1e-3, err_msg=head)


def test_serving_and_tflite_functions_decode_the_networks_they_are_given(tmp_path):
    """The SavedModel's functions and the TFLite computation (converted and run) of net 1, net 2 and both."""
    from posedual_tf import export, tflite

    net1, net2 = _fixed_nets()
    cfg = _cfg()
    crops = np.zeros([1, H, W, 3], np.float32)
    for head, chosen in (("net1", [net1]), ("net2", [net2]), ("ensemble", [net1, net2])):
        at, peak = WANT[head]
        serve_crops, *_ = export.serving_functions(cfg, chosen, False, "shift")
        got = serve_crops(tf.constant(crops))["keypoints"].numpy()[0]      # crop px: 4 px per heatmap px
        np.testing.assert_allclose(got[:, 2], peak, rtol=1e-6, err_msg=head)
        np.testing.assert_allclose(got[:, :2], np.tile(np.multiply(at, 4.0), (24, 1)), atol=1e-3, err_msg=head)
        path = tmp_path / f"{head}.tflite"
        path.write_bytes(tflite.convert(tflite.keypoints_function(cfg, chosen, "shift"), "float32", None))
        lite = tflite.run_tflite(str(path), crops.astype(np.uint8))[0]            # COCO-17 (y, x) / crop size
        np.testing.assert_allclose(lite[:, 2], peak, rtol=1e-5, err_msg=head)
        np.testing.assert_allclose(lite[:, :2], np.tile([at[1] * 4.0 / H, at[0] * 4.0 / W], (17, 1)), atol=1e-4,
                                   err_msg=head)


def test_flip_test_averages_each_network_with_its_mirrored_pass():
    """test.flip_test: a network's heatmaps are averaged with its pass on the mirrored crop, mirrored back
    (left and right joints swapped) and shifted one pixel right (test.shift_heatmap): a network that
    ignores its input shows both peaks at half height, at x and at W_hm - x; the ensemble at a quarter."""
    from posedual_tf import export

    net1, net2 = _fixed_nets()
    crops = tf.zeros([1, H, W, 3])
    for chosen, peak in (([net1], 1.0), ([net1, net2], 0.5)):
        serve_crops, *_ = export.serving_functions(_cfg(), chosen, True, "shift")
        hm = serve_crops(crops)["heatmaps"].numpy()[0]
        np.testing.assert_allclose(hm[A[1], A[0]], peak / 2, rtol=1e-6)
        np.testing.assert_allclose(hm[A[1], HW - A[0]], peak / 2, rtol=1e-6)
        assert np.count_nonzero(hm[..., 0] >= peak / 2 - 1e-6) == 2


@pytest.fixture(scope="module")
def constant_checkpoint(tmp_path_factory):
    """A PoseDual checkpoint whose net 1 outputs 0.8 everywhere and net 2 0.3."""
    cfg = _cfg()
    nets = builder.build_networks(cfg, policy="float32")
    for net, value in zip(nets, (0.8, 0.3)):
        final = net.get_layer("final_layer")
        kernel, bias = final.get_weights()
        final.set_weights([np.zeros_like(kernel), np.full_like(bias, value)])
    folder = tmp_path_factory.mktemp("constant") / "weights"
    checkpoints.save_nets(nets, str(folder))
    return cfg, str(folder)


CONSTANT = {"1": 0.8, "2": 0.3, "ensemble": 0.55}


def test_each_head_of_a_checkpoint_reaches_evaluation_export_predict_and_tflite(constant_checkpoint, shared,
                                                                                 tmp_path):
    from posedual_tf import api, predict, tflite

    cfg, weights = constant_checkpoint
    nets, _ = checkpoints.load_networks(cfg, weights)
    out = runner.predict(codec.HeatmapCodec.from_config(cfg), nets, _eval_batch([[50.0, 60.0]], [[0.5, 0.7]]),
                         progress=False)
    for head, net in (("net1", "1"), ("net2", "2"), ("ensemble", "ensemble")):
        np.testing.assert_allclose(out[head][0]["keypoints"][:, 2], CONSTANT[net], rtol=1e-5, err_msg=head)
    image = shared / "coco/000000196141.jpg"
    box = [[150.0, 60.0, 120.0, 260.0]]
    crop = np.zeros([1, H, W, 3], np.uint8)
    for net, value in CONSTANT.items():
        saved = api.export_saved_model(cfg, weights, str(tmp_path / f"saved_{net}"), net=net)
        got = api.predict_image(saved, image.read_bytes(), box)
        np.testing.assert_allclose(got["keypoints"][0, :, 2], value, rtol=1e-5, err_msg=net)
        # the score: the mean of the joint scores above test.in_vis_thre (0.2)
        np.testing.assert_allclose(got["scores"][0], value, rtol=1e-5, err_msg=net)
        lite = tflite.run_tflite(tflite.export_tflite(cfg, weights, str(tmp_path / "tfl"), net=net), crop)
        np.testing.assert_allclose(lite[0, :, 2], value, rtol=1e-5, err_msg=net)
    # a constant heatmap decodes at its first pixel: the top-left corner of the person's crop, so the
    # keypoints show the box predict_image used: cut to the (non-square) image, 3:4, 1.25 times larger
    height, width = cv2.imread(str(image)).shape[:2]
    assert width != height
    boxes = [[150.0, 60.0, 120.0, 260.0], [width - 80.0, 30.0, 200.0, 150.0], [40.0, height - 90.0, 100.0, 300.0]]
    got = api.predict_image(str(tmp_path / "saved_ensemble"), image.read_bytes(), boxes)["keypoints"]
    for b, (x, y, w, h) in enumerate(boxes):
        x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        w, h = x2 - x1, y2 - y1
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        corner = [x1 + (x2 - x1) / 2 - 1.25 * w / 2, y1 + (y2 - y1) / 2 - 1.25 * h / 2]
        np.testing.assert_allclose(got[b, :, :2], np.tile(corner, (17, 1)), atol=1e-3, err_msg=str(boxes[b]))
    # predict on an image file, with the ensemble's SavedModel: the keypoint scores in results.json
    results = predict.run(str(tmp_path / "saved_ensemble"), [str(image)], str(tmp_path / "pred"),
                          {image.name: [(box[0], 1.0)]}, progress=False)
    assert len(results) == 1
    np.testing.assert_allclose(results[0]["keypoints"][2::3], CONSTANT["ensemble"], rtol=1e-3)
    assert joints.COCO.num_joints * 3 == len(results[0]["keypoints"])
