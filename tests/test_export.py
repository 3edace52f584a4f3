"""SavedModel export: both signatures against Keras + Python decode, CLI listing, predict, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import checkpoints, codec, config, geometry, joints
from posedual_tf.models import builder

SETS = ["data.image_size=[96,128]", "data.heatmap_size=[24,32]", "model.width_multiplier=0.125"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from posedual_tf import export

    root = tmp_path_factory.mktemp("export")
    cfg = config.load("coco1k_dual", SETS)
    nets = builder.build_networks(cfg)
    checkpoints.save_nets(nets, str(root / "weights"))
    export.export(cfg, str(root / "weights"), str(root / "saved"), net="ensemble")
    return cfg, nets, str(root / "saved")


CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    m = tf.saved_model.load(sys.argv[1])
    crops = np.load(sys.argv[2])
    out = m.signatures["serving_default"](crops=tf.constant(crops))
    data = open(sys.argv[3], "rb").read()
    boxes = np.array(json.loads(sys.argv[4]), np.float32)
    img = m.signatures["predict_image"](image_bytes=tf.constant(data), boxes=tf.constant(boxes))
    empty = m.signatures["predict_image"](image_bytes=tf.constant(data), boxes=tf.zeros([0, 4]))
    try:
        m.signatures["predict_image"](image_bytes=tf.constant(b"not an image"), boxes=tf.constant(boxes))
        bad = "no error"
    except tf.errors.InvalidArgumentError:
        bad = "InvalidArgument"
    np.savez(sys.argv[5], heatmaps=out["heatmaps"].numpy(), keypoints=out["keypoints"].numpy(),
             image_keypoints=img["keypoints"].numpy(), scores=img["scores"].numpy(),
             empty=empty["keypoints"].numpy().shape)
    print(bad)
""")


def test_signatures_match_keras_in_fresh_process(exported, shared, tmp_path):
    cfg, nets, saved = exported
    image_path = shared / "coco/000000196141.jpg"
    boxes = [[150.0, 60.0, 120.0, 260.0], [300.0, 20.0, 80.0, 200.0], [10.0, 30.0, 100.0, 150.0],
             [200.0, 100.0, 60.0, 90.0], [0.0, 0.0, 400.0, 420.0]]
    # real crops (RGB 0-255) of the image, as a client would send them
    from posedual_tf.data import records

    rgb = records.decode_image(tf.constant(image_path.read_bytes())).numpy().astype(np.float32)
    centers, scales = geometry.tf_box_to_center_scale(boxes, 96 / 128)
    crops = np.stack([geometry.tf_crop(tf.constant(rgb), c, s, tf.constant(0.0), (96, 128)).numpy()
                      for c, s in zip(centers.numpy(), scales.numpy())])
    np.save(tmp_path / "crops.npy", crops)
    proc = subprocess.run([sys.executable, "-c", CHECK, saved, str(tmp_path / "crops.npy"), str(image_path),
                           json.dumps(boxes), str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "InvalidArgument"
    got = np.load(tmp_path / "out.npz")
    # Keras model + Python decode on the same crops (BGR, normalised: the reference's input)
    x = (crops[..., ::-1] / 255.0 - np.array(cfg.data.mean)) / np.array(cfg.data.std)
    hm = 0.5 * (nets[0](x.astype(np.float32), training=False).numpy() + nets[1](x.astype(np.float32), training=False).numpy())
    np.testing.assert_allclose(got["heatmaps"], hm, atol=1e-4)
    coords, maxvals = codec.decode_heatmaps(hm, centers, scales, None, "shift")
    np.testing.assert_allclose(got["image_keypoints"][..., :2], coords.numpy()[:, list(joints.COCO.to_union)], atol=1e-3)
    np.testing.assert_allclose(got["image_keypoints"][..., 2], maxvals.numpy()[:, list(joints.COCO.to_union)], atol=1e-4)
    crop_coords, _ = codec.decode_heatmaps(hm, np.tile([[48.0, 64.0]], (5, 1)), np.tile([[96 / 200, 128 / 200]], (5, 1)))
    np.testing.assert_allclose(got["keypoints"][..., :2], crop_coords.numpy(), atol=1e-3)
    assert tuple(got["empty"]) == (0, 17, 3)
    assert got["scores"].shape == (5,)


def test_saved_model_cli_lists_both_signatures(exported):
    _, _, saved = exported
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", saved, "--all"]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "signature_def['serving_default']" in out and "signature_def['predict_image']" in out
    assert "shape: (-1, 128, 96, 3)" in out and "dtype: DT_STRING" in out and "shape: (-1, 4)" in out
    assert "shape: (-1, 17, 3)" in out and "shape: (-1, 24, 3)" in out


def test_predict_cli_writes_pngs_and_evaluable_results(exported, shared, tmp_path):
    _, _, saved = exported
    out = tmp_path / "pred"
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.predict", "--saved-model", saved, "--images",
                           str(shared / "coco"), "--boxes", str(shared / "coco/test_coco_det_AP_H_56.json"),
                           "--min-box-score", "0.5", "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.stem + ".png" for p in shared.glob("coco/*.jpg"))
    results = json.loads((out / "results.json").read_text())
    dets = json.loads((shared / "coco/test_coco_det_AP_H_56.json").read_text())
    assert len(results) == sum(d["score"] >= 0.5 for d in dets)
    from posedual_tf.evaluation import coco

    stats = coco.evaluate_coco(str(out / "results.json"), str(shared / "coco/test_coco.json"))
    assert set(stats) == set(coco.STAT_NAMES) and 0.0 <= stats["AP"] <= 1.0
