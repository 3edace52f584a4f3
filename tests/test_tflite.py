"""TFLite exports (posedual_tf/tflite.py): float32 and float16 against the SavedModel on real crops, int8
calibrated on real people keeping their keypoints."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import checkpoints, config, geometry, joints
from posedual_tf.models import builder
from posedual_tf.data.settings import EvalDataSettings
from tests.conftest import EXPORT_SETS as SETS

#: int8 keypoints vs the SavedModel's on the 12 real crops (96x128 px) of the fitted network, 17 joints each.
#: Measured (two fits): median 0 px, mean 0.51-0.60 px, 90th percentile 2 px, score 0.027-0.032 off at most;
#: with the decoding quantised as well, every joint was tens of pixels off.
MEDIAN_INT8_PX, MEAN_INT8_PX, P90_INT8_PX, MAX_SCORE_INT8 = 0.5, 1.5, 4.0, 0.1
FIT_STEPS = 120


def _real_crops(shared, cfg, n=6):
    """uint8 RGB crops of the config's input size around real people (their GT boxes)."""
    import cv2

    w, h = cfg.data.image_size
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    files_by_id = {im["id"]: im["file_name"] for im in ann["images"]}
    out = []
    for a in ann["annotations"][:n]:
        img = cv2.imread(str(shared / "coco" / files_by_id[a["image_id"]]))[..., ::-1]
        center, scale = geometry.box_to_center_scale(a["bbox"], w / h)
        m = geometry.get_affine_transform(center, scale, 0.0, (w, h))
        out.append(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR))
    return np.stack(out).astype(np.uint8)


def test_tflite_float32_and_float16_match_the_saved_model_on_real_crops(exported, shared, tmp_path):
    """The .tflite files load in tf.lite.Interpreter and their COCO-17 keypoints (y, x normalised to the crop)
    agree with the SavedModel's serving_default on real crops: float32 within 0.5 px; float16 within 0.1 px
    (measured on this fixed-weight network: 0.022 px at most)."""
    from posedual_tf import tflite

    cfg, nets, saved = exported
    weights = str(tmp_path / "weights")
    checkpoints.save_nets(nets, weights)
    crops = _real_crops(shared, cfg)
    ref = tf.saved_model.load(saved).signatures["serving_default"](crops=tf.constant(crops, tf.float32))
    want = ref["keypoints"].numpy()[:, list(joints.COCO.to_union)]          # crop px (x, y, score)
    w, h = cfg.data.image_size
    for precision in ("float32", "float16"):
        path = tflite.export_tflite(cfg, weights, str(tmp_path / "tfl"), net="ensemble", precision=precision)
        got = tflite.run_tflite(path, crops)
        assert got.shape == (len(crops), 17, 3)
        px = np.stack([got[..., 1] * w, got[..., 0] * h], -1)
        err = np.linalg.norm(px - want[..., :2], axis=-1)
        if precision == "float32":
            assert err.max() <= 0.5, err.max()
            np.testing.assert_allclose(got[..., 2], want[..., 2], atol=1e-4)
        else:
            assert err.max() <= 0.1, np.sort(err)[-5:]                       # measured: 0.022 px
        assert os.stat(path).st_mode & 0o044 == 0o044                        # readable by others


@pytest.fixture(scope="module")
def fitted(coco_records, tmp_path_factory):
    """The fixture's network fitted to the 12 real people of coco_records (a few hundred Adam steps on their
    GT crops and targets): peaked heatmaps, as a trained network has (random weights give flat ones, whose
    argmax no int8 grid can keep). Returns (cfg, weights folder, SavedModel folder of net 1)."""
    import copy

    import keras

    from posedual_tf import export
    from posedual_tf.data import pipeline

    keras.utils.set_random_seed(5)
    cfg = config.load("coco1k_dual", SETS)
    c = copy.deepcopy(cfg)
    c.data.val.records, c.test.use_gt_bbox = coco_records, True
    batch = next(iter(pipeline.eval_dataset(EvalDataSettings.from_config(c), batch_size=12)[0]))
    nets = builder.build_networks(cfg)
    opt = keras.optimizers.Adam(2e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            w = batch["weight"][:, None, None, :]
            loss = tf.reduce_mean(tf.square((nets[0](batch["image"], training=True) - batch["target"]) * w))
        opt.apply_gradients(zip(tape.gradient(loss, nets[0].trainable_variables), nets[0].trainable_variables))
        return loss

    first = float(step())
    for _ in range(FIT_STEPS):
        last = float(step())
    assert last < 0.2 * first, (first, last)
    root = tmp_path_factory.mktemp("fitted")
    checkpoints.save_nets(nets, str(root / "weights"))
    export.export(cfg, str(root / "weights"), str(root / "saved"), net="1")
    return cfg, str(root / "weights"), str(root / "saved")


def test_tflite_int8_needs_calibration_and_keeps_the_keypoints_on_real_crops(fitted, coco_records, shared,
                                                                               tmp_path):
    """int8 needs --calibration; calibrated on real people, its network runs in int8 (per-channel int8
    kernels, under 40 % of float32's size) while its decoding stays float32, and its keypoints on real crops
    stay near the SavedModel's (with the decoding quantised too: 53 px off on the demo network)."""
    from posedual_tf import tflite

    cfg, weights, saved = fitted
    with pytest.raises(tflite.TFLiteExportError, match="--precision int8: needs --calibration PREFIX"):
        tflite.export_tflite(cfg, weights, str(tmp_path / "tfl"), precision="int8")
    assert not (tmp_path / "tfl").exists()
    path = tflite.export_tflite(cfg, weights, str(tmp_path / "tfl"), precision="int8", calibration=coco_records,
                                people=12)
    details = tflite.interpreter(path).get_tensor_details()
    kernels = [t for t in details if t["dtype"] == np.int8 and t["quantization_parameters"]["scales"].size > 1]
    assert len(kernels) >= 20, len(kernels)                                   # every conv layer's weights
    decoding = [t for t in details if t["name"].startswith(tflite.DECODE_SCOPE + "/")]
    assert decoding and not [t["name"] for t in decoding if t["dtype"] == np.int8]
    out = tflite.interpreter(path).get_output_details()[0]["name"]          # not dequantised from an int8 copy
    assert out and not [t["name"] for t in details if t["dtype"] == np.int8 and t["name"].rstrip("0123456789") == out]
    crops = _real_crops(shared, cfg, n=12)
    want = tf.saved_model.load(saved).signatures["serving_default"](crops=tf.constant(crops, tf.float32))
    want = want["keypoints"].numpy()[:, list(joints.COCO.to_union)]
    got = tflite.run_tflite(path, crops)
    w, h = cfg.data.image_size
    err = np.linalg.norm(np.stack([got[..., 1] * w, got[..., 0] * h], -1) - want[..., :2], axis=-1)
    assert np.median(err) <= MEDIAN_INT8_PX and err.mean() <= MEAN_INT8_PX, (np.median(err), err.mean())
    assert np.percentile(err, 90) <= P90_INT8_PX, np.sort(err.ravel())[-20:]
    assert np.abs(got[..., 2] - want[..., 2]).max() <= MAX_SCORE_INT8
    size = {p: os.path.getsize(tflite.export_tflite(cfg, weights, str(tmp_path / "tfl"), precision=p))
            for p in ("float32", "float16")}
    assert os.path.getsize(path) < 0.4 * size["float32"] and size["float16"] < 0.6 * size["float32"]
