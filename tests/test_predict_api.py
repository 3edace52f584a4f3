"""#42: ``posedual_tf.predict`` as a notebook uses it: every image form and every model kind (a training
workdir, Keras networks, a SavedModel, a .tflite file) give the same keypoints; typed results; the export
rule (the better network of the run's last validation) followed and printed by every export path."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from tests.conftest import EXPORT_SETS

# the box of the sample's person, written here (COCO annotation 442619 of val2017 image 785)
SKIER = [280.79, 44.73, 218.7, 346.68]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A hand-made finished PoseDual run whose train_result.json names net 2 the better network, with its
    SavedModel and .tflite exported by the default rule (no flip test: the .tflite file has none)."""
    import io
    from contextlib import redirect_stdout

    import keras

    import posedual_tf
    from posedual_tf import checkpoints, files, training

    keras.utils.set_random_seed(5)
    root = tmp_path_factory.mktemp("predict_run")
    workdir = root / "run"
    # every joint counts in a person's score (random networks' peaks lie under the usual 0.2)
    cfg = posedual_tf.load_config("coco1k_dual", [*EXPORT_SETS, "test.flip_test=false", "test.in_vis_thre=0.0",
                                                  f"workdir={workdir}"])
    nets = posedual_tf.build_networks(cfg)
    files.claim(str(workdir), "train")
    training.write_run_config(cfg, str(workdir))
    checkpoints.save_nets(nets, files.own(str(workdir), "final"))
    (workdir / "train_result.json").write_text(json.dumps(
        {"best_network": {"net": "2", "why": "the better network at the last validation (net1 0.1, net2 0.2)"}}))
    printed = io.StringIO()
    with redirect_stdout(printed):
        saved = posedual_tf.export_saved_model(cfg, str(workdir / "final"), str(root / "saved"))
        lite = posedual_tf.export_tflite(cfg, str(workdir / "final"), str(root / "lite"))
    png = root / "skier.png"                          # a lossless copy: every decoder reads the same pixels
    assert cv2.imwrite(str(png), cv2.imread(posedual_tf.samples.IMAGE))
    return cfg, nets, workdir, saved, lite, png, printed.getvalue()


def test_every_export_path_follows_the_rule_and_prints_it(run):
    cfg, nets, workdir, saved, lite, png, printed = run
    lines = printed.splitlines()
    assert lines[0].startswith("SavedModel: ") and lines[1] == (
        "  net 2: the better network at the last validation (net1 0.1, net2 0.2)")
    assert lines[2].startswith("TFLite (float32): ") and lite.endswith("posedual_net2_float32.tflite")
    assert lines[3] == lines[1]
    assert json.loads(open(f"{saved}/posedual_export.json").read())["net"] == "2"
    assert len(lines[1]) <= 80


def test_same_keypoints_from_every_image_form_and_model_kind(run, capsys):
    from PIL import Image

    import posedual_tf

    cfg, nets, workdir, saved, lite, png, _ = run
    want = posedual_tf.predict(saved, png.read_bytes(), [SKIER])
    assert len(want) == 1 and want.people[0].box == tuple(SKIER)
    reference = want.people[0].keypoints
    rgb = np.asarray(Image.open(png).convert("RGB"))
    forms = {"numpy": rgb, "path": str(png), "PIL": Image.open(png), "bytes": png.read_bytes(),
             "RGBA": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])}
    kinds = {"workdir": str(workdir), "networks": nets, "SavedModel": saved, "tflite": lite}
    for kind, model in kinds.items():
        extra = {"cfg": cfg, "net": "2"} if kind == "networks" else {}
        for form, image in forms.items():
            got = posedual_tf.predict(model, image, [SKIER], **extra)
            assert len(got) == 1, (kind, form)
            diff = np.abs(got.people[0].keypoints[:, :2] - reference[:, :2]).max()
            assert diff <= 0.5, (kind, form, diff)
            assert np.abs(got.people[0].keypoints[:, 2] - reference[:, 2]).max() < 1e-3, (kind, form)
    # the rule chose net 2: net 1 of the same networks puts the joints elsewhere
    other = posedual_tf.predict(nets, rgb, [SKIER], cfg=cfg, net="1").people[0].keypoints
    assert np.abs(other[:, :2] - reference[:, :2]).max() > 2.0
    # a list of images: a list of results, in order, boxes per image
    both = posedual_tf.predict(saved, [str(png), rgb], [[SKIER], [SKIER, [0, 0, 50, 60]]])
    assert [len(r) for r in both] == [1, 2]
    np.testing.assert_allclose(both[1].people[0].keypoints, reference, atol=1e-4)


def test_without_boxes_a_detector_finds_the_people(run, capsys):
    import posedual_tf

    cfg, nets, workdir, saved, lite, png, _ = run
    reference = posedual_tf.predict(saved, str(png), [SKIER]).people[0].keypoints
    seen = []

    def finder(rgb):                      # a detector of the user's: RGB pixels in, boxes out
        seen.append(rgb.shape)
        return [(SKIER, 0.5)]

    found = posedual_tf.predict(saved, str(png), detector=finder)
    assert seen == [(425, 640, 3)] and found.people_from == "detector"
    np.testing.assert_allclose(found.people[0].keypoints, reference, atol=1e-4)
    assert found.people[0].box_score == 0.5
    alone = posedual_tf.predict(saved, str(png), [SKIER]).people[0]
    assert alone.score > 0 and alone.score == pytest.approx(float(alone.keypoints[:, 2].mean()), rel=1e-5)
    assert found.people[0].score == pytest.approx(0.5 * alone.score, rel=1e-6)
    whole = posedual_tf.predict(lite, str(png), detector="whole")
    assert whole.people[0].box == (0.0, 0.0, 640.0, 425.0)
    # the default: OpenCV's HOG detector, weak: finding nobody is said, not silent
    small = np.zeros((60, 40, 3), np.uint8)
    nobody = posedual_tf.predict(saved, small)
    assert nobody.people_from == "hog" and len(nobody) == 0
    err = capsys.readouterr().err
    assert "HOG detector found nobody in image 1" in err
    assert "(40x60 px is smaller than the HOG detector's 64x128 window)" in err


def test_results_are_typed_coco_entries_and_drawings(run):
    import posedual_tf

    cfg, nets, workdir, saved, lite, png, _ = run
    poses = posedual_tf.predict(saved, str(png), [SKIER, [2000, 2000, 10, 10]])
    assert isinstance(poses, posedual_tf.ImagePoses) and isinstance(poses.people[0], posedual_tf.Person)
    assert poses.outside == (1,) and len(poses) == 1 and poses.size == (640, 425)
    assert repr(poses) == "ImagePoses(1 person, 640x425, people from boxes, 1 boxes outside)"
    entry, = poses.to_coco(785)
    kp = poses.people[0].keypoints
    assert entry["image_id"] == 785 and entry["category_id"] == 1 and entry["bbox"] == SKIER
    assert entry["keypoints"] == [round(float(v), 3) for v in kp.ravel()] and len(entry["keypoints"]) == 51
    image = cv2.imread(str(png))[..., ::-1]
    drawn = poses.draw(str(png))
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    changed = np.argwhere(np.abs(drawn.astype(int) - image).max(-1) > 0)
    x0, y0 = changed.min(0)[::-1]
    x1, y1 = changed.max(0)[::-1]
    # the box's frame is drawn (2 px wide, about its edges), nothing outside it
    assert abs(x0 - 281) <= 2 and abs(y0 - 45) <= 2 and abs(x1 - 499) <= 2 and abs(y1 - 391) <= 2
    with pytest.raises(ValueError, match="^draw: the image is 40x60, these poses are of a 640x425 image$"):
        poses.draw(np.zeros((60, 40, 3), np.uint8))


@pytest.mark.parametrize("call, message", [
    (lambda p, s: p(s, np.zeros((8, 8, 3)), [SKIER]), "^images: expected uint8 pixels"),
    (lambda p, s: p(s, [np.zeros((8, 8, 3), np.uint8)] * 2, [[SKIER]]),
     "^boxes: 1 lists of boxes for 2 images; give one list per image$"),
    (lambda p, s: p(s, np.zeros((8, 8, 3), np.uint8), [SKIER], detector="whole"), "^give boxes or detector, not both$"),
    (lambda p, s: p(s, np.zeros((8, 8, 3), np.uint8), [[1, 2, 3]]), r"^boxes: expected \[\[x, y, w, h\], ...\]"),
    (lambda p, s: p(s, np.zeros((8, 8, 3), np.uint8), detector=3), "^detector: expected 'hog', 'whole'"),
    (lambda p, s: p("no/such/model", np.zeros((8, 8, 3), np.uint8)), "^model: no/such/model: expected a training "),
    (lambda p, s: p(s, np.zeros((8, 8, 3), np.uint8), net="3"), "^net: expected one of 'best', '1', '2', 'ensemble'"),
])
def test_bad_arguments_are_one_line(run, call, message):
    import posedual_tf

    with pytest.raises((TypeError, ValueError), match=message) as e:
        call(posedual_tf.predict, run[3])
    assert "\n" not in str(e.value)


def test_networks_need_their_config(run):
    import posedual_tf

    with pytest.raises(ValueError, match=r"^model: Keras networks need their config: predict\(nets, images, cfg=cfg\)$"):
        posedual_tf.predict(run[1], np.zeros((8, 8, 3), np.uint8), [SKIER])


def test_the_module_and_the_function_are_one(run):
    """``posedual_tf.predict`` is the command's module; importing it (as ``python -m`` does) keeps it callable."""
    import importlib

    import posedual_tf

    module = importlib.import_module("posedual_tf.predict")
    assert posedual_tf.predict is module and callable(module)
    got = module(run[3], str(run[5]), [SKIER])
    assert len(got) == 1


def _as_tf_serving_maps(request: dict, signature) -> dict:
    """The tensors TF Serving's REST API builds from a request body (its documented JSON mapping, written here):
    ``{"b64": s}`` is the bytes of base64 ``s``; ``instances`` (rows) stacks each named input of every row
    along a new first dimension (every row must name the same inputs, with the same shapes); ``inputs``
    (columns) gives each named input whole; numbers take the dtype of the signature's input."""
    import base64

    import tensorflow as tf

    def value(v):
        if isinstance(v, dict):
            assert list(v) == ["b64"]
            return base64.b64decode(v["b64"])
        return [value(x) for x in v] if isinstance(v, list) else v

    if "instances" in request:
        rows = request["instances"]
        names = sorted(rows[0])
        assert all(sorted(r) == names for r in rows)
        columns = {n: [value(r[n]) for r in rows] for n in names}
    else:
        columns = {n: value(v) for n, v in request["inputs"].items()}
    specs = signature.structured_input_signature[1]
    assert sorted(columns) == sorted(specs)
    return {n: tf.constant(columns[n], dtype=specs[n].dtype) for n in columns}


@pytest.mark.parametrize("layout", ["instances", "inputs"])
def test_tf_serving_rest_json_maps_onto_the_batched_signature(run, layout, tmp_path):
    """The request body ``python -m posedual_tf.rest_request`` writes, read as TF Serving reads it, runs
    ``predict_images`` and gives what predict gives, per image (the shorter box list padded, not valid)."""
    import subprocess
    import sys

    import tensorflow as tf

    import posedual_tf
    from posedual_tf import rest_request

    cfg, nets, workdir, saved, lite, png, _ = run
    jpeg = open(posedual_tf.samples.IMAGE, "rb").read()
    boxes = [[SKIER], [SKIER, [20.0, 30.0, 100.0, 200.0]]]
    request = json.loads(json.dumps(rest_request.body([jpeg, png.read_bytes()], boxes, layout)))
    assert request["signature_name"] == "predict_images"
    signature = tf.saved_model.load(saved).signatures[request["signature_name"]]
    out = signature(**_as_tf_serving_maps(request, signature))
    assert out["keypoints"].shape == (2, 2, 17, 3)
    assert out["valid"].numpy().tolist() == [[True, False], [True, True]]
    for i, image in enumerate([jpeg, png.read_bytes()]):
        want = posedual_tf.predict(saved, image, boxes[i])
        for k, person in enumerate(want.people):
            np.testing.assert_allclose(out["keypoints"][i, k].numpy(), person.keypoints, atol=1e-4)
    # the command writes the same body for the sample, and prints the curl line
    path = tmp_path / "request.json"
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.rest_request", "--sample", f"--layout={layout}",
                           "--output", "request.json"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(path.read_text()) == rest_request.body([jpeg], [[SKIER]], layout)
    assert "curl -d @" in proc.stdout and all(len(line) <= 80 for line in proc.stdout.splitlines())
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1].endswith(
        "already exists; nothing was written (choose a new file)")


def test_tflite_conversion_logs_no_absl_warning(caplog):
    """TensorFlow's converter warns through absl ("Please consider providing the trackable_obj argument"):
    quiet for the Python API too, unless absl's verbosity was raised."""
    import logging

    import tensorflow as tf
    from absl import logging as absl_logging

    from posedual_tf import tflite

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def double(x):
        return {"y": x * 2.0}

    absl_logging.set_verbosity(absl_logging.WARNING)
    with caplog.at_level(logging.WARNING):
        assert tflite.convert(double, "float32")[4:8] == b"TFL3"
    assert not [r for r in caplog.records if "trackable_obj" in r.getMessage()]
    assert absl_logging.get_verbosity() == absl_logging.WARNING         # left as it was


def test_the_export_rule(tmp_path):
    from posedual_tf import best_net

    ap = lambda stats: stats["AP"]  # noqa: E731
    assert best_net.record({"net1": {"AP": 0.3}, "net2": {"AP": 0.2}}, ap)["net"] == "1"
    assert best_net.record({"net1": {"AP": 0.3}, "net2": {"AP": 0.4}, "ensemble": {"AP": 0.5}}, ap) == {
        "net": "2", "why": "the better network at the last validation (net1 0.3000, net2 0.4000); "
                           "the ensemble: 0.5000 (--net ensemble)"}
    assert best_net.record({"net1": {"AP": 0.3}}, ap) == {"net": "1", "why": "the run's only network"}
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    assert best_net.resolve("best", str(final), 2) == ("1", f"no train_result.json beside {final}: network 1")
    (tmp_path / "run" / "train_result.json").write_text(json.dumps({"best_network": {"net": "2", "why": "w"}}))
    assert best_net.resolve("best", str(final), 2) == ("2", "w")
    assert best_net.resolve("best", str(tmp_path / "run"), 2) == ("2", "w")
    assert best_net.resolve("best", str(final), 1) == ("1", "the run's only network")
    assert best_net.resolve("1", str(final), 2) == ("1", "as asked")
    (tmp_path / "run" / "train_result.json").write_text(json.dumps({"metrics": {}}))
    assert best_net.resolve("best", str(final), 2)[0] == "1"
    # what an export prints of the choice: two lines within 80 columns
    lines = best_net.describe(*best_net.choose({"net1": {"AP": 0.4012}, "net2": {"AP": 0.4301},
                                                "ensemble": {"AP": 0.4400}}, ap))
    assert lines == ["  net 2: the better network at the last validation (net1 0.4012, net2 0.4301)",
                     "  (the ensemble: 0.4400 (--net ensemble))"]
    assert max(map(len, lines)) <= 80
    with pytest.raises(ValueError, match=r"^--net ensemble needs a PoseDual config \(two networks\)$"):
        best_net.resolve("ensemble", str(final), 1)
    with pytest.raises(ValueError, match=r"^--net 2: this config has 1 network\(s\)$"):
        best_net.resolve("2", str(final), 1)


def test_a_model_given_by_path_is_loaded_once_until_it_changes(run, tmp_path):
    """predict image by image (a notebook's loop) loads a SavedModel once; a new export at that path is
    loaded again."""
    import shutil

    from posedual_tf import inference

    saved = tmp_path / "saved"
    shutil.copytree(run[3], saved)
    first = inference.model_runner(str(saved))
    assert inference.model_runner(str(saved)) is first
    assert inference.model_runner(str(saved) + "/") is first                 # the same folder, spelled otherwise
    os.utime(saved / "saved_model.pb", ns=(1, 1))                            # written again
    assert inference.model_runner(str(saved)) is not first
