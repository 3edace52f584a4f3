"""SavedModel export: both signatures against Keras + Python decode, CLI listing, predict, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import checkpoints, files, geometry, joints
from posedual_tf.models import builder

from tests.conftest import EXPORT_SETS as SETS


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


def _decode_np(hm, centers, scales):
    """The reference's decoding written out per joint, apart from the code under test: first argmax
    (zeroed where the max is not positive), a quarter pixel towards the higher neighbour when
    1 < p < size - 1, then heatmap -> image by the box (x = p * 200 s / w + c - 100 s)."""
    b, h, w, j = hm.shape
    coords, maxvals = np.zeros((b, j, 2)), np.zeros((b, j))
    for i in range(b):
        for k in range(j):
            m = hm[i, ..., k]
            y, x = divmod(int(np.argmax(m)), w)
            maxvals[i, k] = m[y, x]
            px, py = (float(x), float(y)) if m[y, x] > 0 else (0.0, 0.0)
            if m[y, x] > 0 and 1 < x < w - 1 and 1 < y < h - 1:
                px += 0.25 * np.sign(m[y, x + 1] - m[y, x - 1])
                py += 0.25 * np.sign(m[y + 1, x] - m[y - 1, x])
            size = scales[i] * 200.0
            coords[i, k] = [px * size[0] / w + centers[i][0] - size[0] / 2,
                            py * size[1] / h + centers[i][1] - size[1] / 2]
    return coords, maxvals


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
    coords, maxvals = _decode_np(hm, centers.numpy(), scales.numpy())
    np.testing.assert_allclose(got["image_keypoints"][..., :2], coords[:, list(joints.COCO.to_union)], atol=1e-3)
    np.testing.assert_allclose(got["image_keypoints"][..., 2], maxvals[:, list(joints.COCO.to_union)], atol=1e-4)
    crop_coords, _ = _decode_np(hm, np.tile([[48.0, 64.0]], (5, 1)), np.tile([[96 / 200, 128 / 200]], (5, 1)))
    np.testing.assert_allclose(got["keypoints"][..., :2], crop_coords, atol=1e-3)
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
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name + ".pose.png" for p in shared.glob("coco/*.jpg"))
    results = json.loads((out / "results.json").read_text())
    dets = json.loads((shared / "coco/test_coco_det_AP_H_56.json").read_text())
    assert len(results) == sum(d["score"] >= 0.5 for d in dets)
    from posedual_tf.evaluation import coco

    # evaluable: every entry is a COCO keypoint result on an image of the ground truth
    gt_ids = {im["id"] for im in json.loads((shared / "coco/test_coco.json").read_text())["images"]}
    for r in results:
        assert r["image_id"] in gt_ids and r["category_id"] == 1 and len(r["keypoints"]) == 51
        assert np.isfinite(r["keypoints"]).all() and np.isfinite(r["score"])
    assert {r["image_id"] for r in results} == {d["image_id"] for d in dets if d["score"] >= 0.5}
    stats = coco.evaluate_coco(str(out / "results.json"), str(shared / "coco/test_coco.json"))
    assert set(stats) == set(coco.STAT_NAMES)


def test_export_never_replaces_what_it_did_not_write(exported, tmp_path):
    from posedual_tf import export

    cfg, nets, saved = exported
    weights = str(tmp_path / "w")
    checkpoints.save_nets(nets, weights)
    # the current folder (or any folder that is not one of our exports) is refused before any work
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.export", "--config", "coco1k_dual",
                           *[f"--set={s}" for s in SETS], "--checkpoint", weights, "--output", "."],
                          capture_output=True, text=True, timeout=300, cwd=mine)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: --output .: already exists and is not a SavedModel written by posedual_tf.export")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(export.ExportError, match="not a SavedModel written by posedual_tf.export"):
        export.export(cfg, weights, str(mine), net="1")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    # a previous export: replaced only with overwrite, and nothing is left beside it
    out = tmp_path / "exp"
    export.export(cfg, weights, str(out), net="1")
    with pytest.raises(export.ExportError, match="pass --overwrite"):
        export.export(cfg, weights, str(out), net="2")
    assert json.loads((out / export.MARKER).read_text())["net"] == "1"
    export.export(cfg, weights, str(out), net="2", overwrite=True)
    assert json.loads((out / export.MARKER).read_text())["net"] == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "mine", "w"]       # no temp or old folder left
    # an output under a file cannot be written: one line, nothing left behind
    (tmp_path / "afile").write_text("x")
    with pytest.raises(export.ExportError, match="cannot write in"):
        export.export(cfg, weights, str(tmp_path / "afile" / "sub"), net="1")


def test_predict_keeps_inputs_and_names_apart_and_skips_what_it_cannot_read(exported, shared, tmp_path):
    import cv2

    from posedual_tf import predict

    _, _, saved = exported
    src = tmp_path / "photos"
    src.mkdir()
    jpg = (shared / "coco/000000196141.jpg").read_bytes()
    for name in ("a.jpg", "photo_003799.jpg", "other_003799.jpg"):
        (src / name).write_bytes(jpg)
    cv2.imwrite(str(src / "a.png"), cv2.imread(str(src / "a.jpg")))
    (src / "empty.jpg").write_bytes(b"")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    # the input folder as output is refused before anything is written
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.predict", "--saved-model", saved, "--images", str(src),
                           "--whole-image", "--output", str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: --output {src}: is the folder of the input images; " \
                                                    "choose another folder"
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    paths = sorted(str(p) for p in src.iterdir())
    ids = predict.image_ids(paths)
    # 003799 twice: ambiguous, so every image gets its place in name order, the same on every run
    assert ids == {"a.jpg": 1, "a.png": 2, "empty.jpg": 3, "other_003799.jpg": 4, "photo_003799.jpg": 5}
    assert predict.image_ids([str(src / "x_12.jpg"), str(src / "y_7.jpg")]) == {"x_12.jpg": 12, "y_7.jpg": 7}
    # boxes keyed by file name; one box outside the image, one without area
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps({"a.jpg": [[150, 60, 120, 260], [5000, 5000, 50, 50]],
                                      "a.png": [{"bbox": [150, 60, 120, 260], "score": 0.9}, [10, 10, -4, 30]]}))
    boxes = predict.load_boxes(str(boxes_file), 0.0, ids)
    out = tmp_path / "out"
    results = predict.run(saved, paths, str(out), boxes, progress=False)
    assert sorted(p.name for p in out.glob("*.png")) == ["a.jpg.pose.png", "a.png.pose.png",
                                                         "other_003799.jpg.pose.png", "photo_003799.jpg.pose.png"]
    assert sorted(r["image_id"] for r in results) == [1, 2]          # the two valid boxes only
    record = {os.path.basename(e["file"]): e for e in json.loads((out / "images.json").read_text())["images"]}
    assert record["empty.jpg"]["skipped"] == "empty file" and record["empty.jpg"]["drawing"] is None
    assert record["a.jpg"]["boxes_without_area"] == [1] and record["a.png"]["boxes_without_area"] == [1]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    # a second run may replace what the first wrote, but not a file someone else put there
    predict.run(saved, paths, str(out), boxes, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.jpg.pose.png").write_bytes(b"someone's")
    with pytest.raises(files.NotOursError, match=r"holds files posedual_tf did not write \(a\.jpg\.pose\.png\)"):
        predict.run(saved, paths, str(tmp_path / "other"), boxes, progress=False)
    assert (tmp_path / "other" / "a.jpg.pose.png").read_bytes() == b"someone's"
    # non-finite boxes name the file and the entry
    boxes_file.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, float("nan"), 4], "score": 1.0}]))
    with pytest.raises(predict.PredictError, match=r"boxes.json: detections\[0\]: expected a box of 4 finite"):
        predict.load_boxes(str(boxes_file), 0.0, ids)


def test_wrong_architecture_is_one_line_and_debug_shows_the_traceback(exported, tmp_path):
    _, nets, _ = exported
    weights = str(tmp_path / "w")
    checkpoints.save_nets(nets, weights)                       # width 0.125
    args = [sys.executable, "-m", "posedual_tf.export", "--config", "coco1k_dual", "--set=data.image_size=[96,128]",
            "--set=data.heatmap_size=[24,32]", "--set=model.width_multiplier=0.25", "--checkpoint", weights,
            "--output", str(tmp_path / "out")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "UserWarning" not in proc.stderr and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {weights}/net1.weights.h5: does not fit the config's net1 (")
    assert "first conv1: (7, 7, 3, 8) in the file, (7, 7, 3, 16) in the network" in last
    assert not (tmp_path / "out").exists()
    proc = subprocess.run(args + ["--debug"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr


def test_predict_without_boxes_finds_people_with_the_built_in_detector(exported, shared, tmp_path):
    _, _, saved = exported
    photo = shared / "coco/000000196141.jpg"
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.predict", "--saved-model", saved, "--image", str(photo),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OpenCV's HOG detector, a weak default" in proc.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results) >= 1 and all(len(r["keypoints"]) == 51 for r in results)
    gt = [a["bbox"] for a in json.loads((shared / "coco/test_coco.json").read_text())["annotations"]
          if a["image_id"] == 196141]

    def iou(a, b):
        ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)

    assert max(iou(r["bbox"], g) for r in results for g in gt) > 0.25       # it found an annotated person
    record = json.loads((tmp_path / "out" / "images.json").read_text())["images"][0]
    assert record["detector"] == "hog" and record["people"] == len(results)


def test_case18_hog_skips_images_smaller_than_its_window_and_a_rerun_may_replace_its_files(exported, tmp_path):
    """HOG aborts the process below its 64x128 window: such images are skipped with the reason."""
    import cv2

    from posedual_tf import predict

    _, _, saved = exported
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "thumb.png"), np.full((48, 48, 3), 128, np.uint8))
    cv2.imwrite(str(src / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    paths = sorted(str(p) for p in src.iterdir())
    out = tmp_path / "out"
    for _ in range(2):                  # the second run replaces the first run's own files
        assert predict.run(saved, paths, str(out), None, progress=False) == []
    record = {os.path.basename(e["file"]): e["skipped"] for e in json.loads((out / "images.json").read_text())["images"]}
    assert record == {"dot.png": "1x1 px is smaller than the HOG detector's 64x128 window; give --boxes or --whole-image",
                      "thumb.png": "48x48 px is smaller than the HOG detector's 64x128 window; give --boxes or --whole-image"}


def test_case12_exif_orientation_is_applied_by_predict_and_ignored_by_records(exported, shared, tmp_path):
    """A phone photo stored sideways with EXIF orientation 6: predict sees it upright (its keypoints are
    those of the upright pixels), while the record decoder reads the stored pixels as the reference does."""
    import cv2
    from PIL import Image

    from posedual_tf import predict
    from posedual_tf.data import records

    _, _, saved = exported
    src = tmp_path / "src"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "rotate 90 degrees clockwise to display"
    Image.open(shared / "coco/000000000785.jpg").save(src / "phone.jpg", exif=exif.tobytes(), quality=95)
    data = (src / "phone.jpg").read_bytes()
    assert records.exif_orientation(data) == 6 and records.exif_orientation((shared / "coco/000000000785.jpg").read_bytes()) == 1
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(records.decode_image(tf.constant(data)).numpy()[..., ::-1], stored)
    upright = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)
    cv2.imwrite(str(src / "upright.png"), upright)
    results = predict.run(saved, [str(src / "phone.jpg"), str(src / "upright.png")], str(tmp_path / "out"), None,
                          whole_image=True, progress=False)
    by_id = {r["image_id"]: r for r in results}
    ids = predict.image_ids([str(src / "phone.jpg"), str(src / "upright.png")])
    phone, ref = by_id[ids["phone.jpg"]], by_id[ids["upright.png"]]
    assert phone["bbox"] == [0.0, 0.0, float(upright.shape[1]), float(upright.shape[0])]
    np.testing.assert_allclose(phone["keypoints"], ref["keypoints"], atol=1e-3)
    record = json.loads((tmp_path / "out" / "images.json").read_text())["images"]
    assert [e.get("exif_orientation") for e in record] == [6, None]


def _od_saved_model(path, outputs=None):
    """A SavedModel with the TF2 Object Detection API's serving signature, returning fixed detections:
    a person (0.9), a person below the threshold (0.3) and a car (class 3, 0.95)."""
    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def detect(self, input_tensor):
            out = {"detection_boxes": tf.constant([[[0.1, 0.2, 0.9, 0.6], [0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.4, 0.4]]]),
                   "detection_classes": tf.constant([[1.0, 1.0, 3.0]]),
                   "detection_scores": tf.constant([[0.9, 0.3, 0.95]]),
                   "num_detections": tf.constant([3.0])}
            return outputs or out

    m = Detector()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.detect})
    return str(path)


def test_detector_of_the_od_api_signature_finds_the_boxes_it_returns(exported, shared, tmp_path):
    """predict --detector with a SavedModel of the Object Detection API's signature built here: the people
    are its person-class boxes above the threshold, in pixels; a SavedModel of another signature is a
    one-line error naming what it returns."""
    _, _, saved = exported
    det = _od_saved_model(tmp_path / "od")
    photo = shared / "coco/000000196141.jpg"
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.predict", "--saved-model", saved, "--image", str(photo),
                           "--detector", det, "--output", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HOG" not in proc.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    import cv2

    h, w = cv2.imread(str(photo)).shape[:2]
    assert len(results) == 1
    np.testing.assert_allclose(results[0]["bbox"], [0.2 * w, 0.1 * h, 0.4 * w, 0.8 * h], rtol=1e-5)
    assert json.loads((tmp_path / "out" / "images.json").read_text())["images"][0]["detector"] == "--detector"
    # a lower threshold keeps the second person; the car is never a person
    proc = subprocess.run(proc.args[:-2] + ["--detector-threshold", "0.2", "--output", str(tmp_path / "out2")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and len(json.loads((tmp_path / "out2" / "results.json").read_text())) == 2
    wrong = _od_saved_model(tmp_path / "classifier", outputs={"logits": tf.constant([[0.0, 1.0]])})
    proc = subprocess.run(proc.args[:-6] + ["--detector", wrong, "--output", str(tmp_path / "out3")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --detector {wrong}: serving_default returns ['logits'], not detection_boxes, detection_classes, "
        "detection_scores; expected a TF2 Object Detection API export (detection_boxes, detection_classes, "
        "detection_scores)")
    assert not (tmp_path / "out3").exists()


def test_export_folders_are_readable_by_others_and_tf_serving_layout(exported, tmp_path):
    """The SavedModel folder and files take the umask's modes (0755 / 0644 under 022, 0750 / 0640 under
    027), not mkdtemp's 0700; --version writes TF Serving's NAME/N/ layout."""
    from posedual_tf import export

    cfg, _, _ = exported
    weights = str(tmp_path / "weights")
    checkpoints.save_nets(builder.build_networks(cfg), weights)
    old = os.umask(0o022)
    try:
        out = export.export(cfg, weights, str(tmp_path / "models" / "posedual"), version=1)
        os.umask(0o027)
        out_b = export.export(cfg, weights, str(tmp_path / "strict"))
    finally:
        os.umask(old)
    assert out == str(tmp_path / "models" / "posedual" / "1")
    assert (tmp_path / "models" / "posedual" / "1" / "saved_model.pb").exists()
    for root, dirs, names in os.walk(out):
        assert os.stat(root).st_mode & 0o777 == 0o755, root
        for n in names:
            assert os.stat(os.path.join(root, n)).st_mode & 0o777 == 0o644, n
    assert os.stat(out_b).st_mode & 0o777 == 0o750
    assert os.stat(os.path.join(out_b, "saved_model.pb")).st_mode & 0o777 == 0o640
    # a second version beside the first; the same version again needs --overwrite
    assert export.export(cfg, weights, str(tmp_path / "models" / "posedual"), version=2).endswith("/2")
    with pytest.raises(export.ExportError, match="holds a previous export; pass --overwrite"):
        export.export(cfg, weights, str(tmp_path / "models" / "posedual"), version=1)
    with pytest.raises(export.ExportError, match="--version 0: expected a positive int"):
        export.export(cfg, weights, str(tmp_path / "models" / "posedual"), version=0)
