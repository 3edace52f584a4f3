"""Nothing lost, nothing silent, part 2: each test is named after the bad-input case it covers
(``case09`` ... of the second bad-input probe) and checks that the bad input ends in one line naming
the file, field or setting, or is skipped and listed with its reason. The ownership and path rules
(cases 1-8, 15) are in test_ownership.py, resume and checkpoints (14, 16, 17, 20) in test_resume.py."""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from posedual_tf import config, files
from tests.conftest import REPO, coco_copy, run_python


def test_case10_config_stating_a_section_twice_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: demo_dual\ntrain:\n  epochs: 3\nmodel:\n  width_multiplier: 0.5\ntrain:\n  lr: 0.1\n")
    with pytest.raises(config.ConfigError, match=r"c\.yaml: line 6, column 1: .*'train' is stated twice \(first at line 2\)"):
        config.load(str(path))


def test_case11_mpii_file_names_of_one_number_do_not_share_an_id(shared, tmp_path):
    from posedual_tf.conversion import mpii

    person = {"center": [100.0, 100.0], "scale": 1.0, "joints": [[50.0, 60.0]] * 16, "joints_vis": [1] * 16}
    ann = tmp_path / "mpii.json"
    ann.write_text(json.dumps([{**person, "image": "1.jpg"}, {**person, "image": "01.jpg"},
                               {**person, "image": "2.jpg"}]))
    entries, skipped = mpii.build_entries(str(ann), str(tmp_path))
    assert [(e.filename, e.image_id) for e in entries] == [("1.jpg", 1), ("2.jpg", 2)]
    assert skipped == [{"image": "01.jpg", "image_id": 1, "instances": 1,
                        "reason": "image id 1 (from the file name) is already 1.jpg's"}]


def test_error_yaml_aliases_are_refused_fast(tmp_path):
    path = tmp_path / "laughs.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}] " + "*10"
                                                     for i in range(8)]
    path.write_text("\n".join(lines).replace(" *10", "") + "\n")
    with pytest.raises(config.ConfigError, match=r"laughs\.yaml: line 2, .*aliases \(\*name\) are not allowed"):
        config.load(str(path))


def test_error_config_based_on_itself_through_dotdot_names_the_cycle(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("base: ../sub/c.yaml\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(str(path))
    assert str(e.value) == "c.yaml: base: cycle (c.yaml -> c.yaml)"


def test_cli_modules_import_side_by_side():
    """#25: importing every command module defines no flag (a notebook may import them together)."""
    proc = run_python(["-c", "import posedual_tf.train, posedual_tf.evaluate, posedual_tf.predict, "
                             "posedual_tf.convert_torch, posedual_tf.export; from absl import flags; "
                             "print(sorted(n for n in flags.FLAGS if n in ('config', 'debug', 'output', 'saved-model')))"],
                      timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr[-2000:]


def test_case13_boxes_that_match_no_image_are_an_error(tmp_path):
    from posedual_tf import predict

    ids = {"a.jpg": 1, "b.jpg": 2}
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"photos/x.jpg": [[1, 2, 3, 4]], "y.jpg": [[1, 2, 3, 4]]}))
    with pytest.raises(predict.PredictError, match=r"boxes\.json: none of its 2 boxes matches an image \(file names"):
        predict.load_boxes(str(boxes), 0.0, ids)
    boxes.write_text(json.dumps({"photos/a.jpg": [[1, 2, 3, 4]]}))           # a path key: matched by base name
    assert predict.load_boxes(str(boxes), 0.0, ids) == {"a.jpg": [([1.0, 2.0, 3.0, 4.0], 1.0)]}
    boxes.write_text(json.dumps([{"image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 1}]))
    with pytest.raises(predict.PredictError, match=r"none of its 1 boxes matches an image \(image ids such as '7'"):
        predict.load_boxes(str(boxes), 0.0, ids)
    boxes.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3, 4], "category_id": "person"}]))
    with pytest.raises(predict.PredictError, match=r"detections\[0\]: category_id 'person' is not an integer"):
        predict.load_boxes(str(boxes), 0.0, ids)
    with pytest.raises(predict.PredictError, match=r"--min-box-score nan: expected a finite number"):
        predict.load_boxes(str(boxes), float("nan"), ids)


def test_case13_image_and_images_together_and_folders_without_images(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(b"x")           # images_in goes by the extension
    from posedual_tf import predict

    with pytest.raises(predict.PredictError, match=rf"--images {tmp_path}: no jpg/jpeg/png files in it; its subfolders "
                                                   rf"sub hold some: predict reads one folder, e.g. --images {tmp_path}/sub"):
        predict.images_in(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(predict.PredictError, match=r"empty: no jpg/jpeg/png files in it$"):
        predict.images_in(str(tmp_path / "empty"))
    proc = run_python(["-m", "posedual_tf.predict", "--saved-model", str(tmp_path), "--image", "a.jpg", "--images",
                       str(tmp_path), "--whole-image", "--output", str(tmp_path / "out")], timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == \
        "error: give one of --image FILE, --images DIR or --sample, not --image and --images"


def test_case19_ctrl_c_is_one_line(tmp_path):
    import signal
    import time

    script = ("import time\nfrom posedual_tf import cli\n"
              "def main(argv):\n    print('ready', flush=True)\n    time.sleep(60)\n"
              "cli.run(main)\n")
    # Ctrl-C as a terminal delivers it: SIGINT at its default disposition. A suite started as a background job of
    # a non-interactive shell inherits SIGINT ignored, and so would the command (it then sleeps its 60 s out).
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted (Ctrl-C); files already written are complete, a re-run resumes"]


def test_case21_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    from posedual_tf.conversion import writer

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    assert writer.check_image(str(fifo)) == (None, "not a regular file", None)
    with pytest.raises(ValueError, match="not a regular file"):
        files.read_bounded(str(fifo))


@pytest.mark.parametrize("setting,expected", [
    ("train.batch_size=1000000000", "train.batch_size: expected a positive int up to 65536"),
    ("train.seed=-1", r"train.seed: expected an int in \[0, 2\^32\)"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints: expected an int >= 1"),
    ("model.num_joints=17", "model.num_joints: expected 24: every network predicts the union joint set"),
])
def test_error_config_settings_name_the_setting(setting, expected):
    with pytest.raises(config.ConfigError, match=rf"^--set {setting.replace('[', '.')}: {expected}"):
        config.load("demo_dual", [setting])


@pytest.mark.parametrize("value,expected", [
    ("{not json", "it is not JSON"),
    ('{"cluster": {"worker": "localhost:1"}}', "its 'cluster' is"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}',
     """its 'task' {"type": "chief", "index": 0} is not one of the cluster's tasks"""),
])
def test_error_malformed_tf_config_is_one_line(monkeypatch, value, expected):
    from posedual_tf import distribution

    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match=r"^TF_CONFIG: expected JSON like .*; " + re.escape(expected)):
        distribution.make_strategy("default")


def _coco_with(shared, tmp_path, edit) -> pathlib.Path:
    ann = coco_copy(shared, tmp_path / "src")
    data = json.loads(ann.read_text())
    edit(data)
    ann.write_text(json.dumps(data))
    return ann


@pytest.mark.parametrize("case,edit,expected", [
    ("image id abc", lambda d: d["images"][0].update(id="abc"), r"images\[0\]: field 'id' should be an integer, got \"abc\""),
    ("image id null", lambda d: d["images"][1].update(id=None), r"images\[1\]: field 'id' should be an integer, got null"),
    ("category person", lambda d: d["annotations"][0].update(category_id="person"),
     r"annotation \d+: field 'category_id' should be an integer, got \"person\""),
])
def test_error_annotation_fields_are_named(shared, tmp_path, case, edit, expected):
    from posedual_tf.conversion import coco
    from posedual_tf.conversion.writer import ConversionError

    ann = _coco_with(shared, tmp_path, edit)
    with pytest.raises(ConversionError, match=rf"^{ann}: {expected}$"):
        coco.convert(str(ann), str(tmp_path / "src"), str(tmp_path / "out" / "val"), workers=1)
    assert not (tmp_path / "out").exists()


def test_error_json_with_a_latin1_byte_names_the_file(shared, tmp_path):
    from posedual_tf.conversion import coco
    from posedual_tf.conversion.writer import ConversionError

    ann = coco_copy(shared, tmp_path / "src")
    ann.write_bytes(ann.read_bytes().replace(b'"images"', b'"images\xe9"', 1))
    with pytest.raises(ConversionError, match=rf"^{ann}: not UTF-8 text \(byte \d+ is 0xe9\)"):
        coco.convert(str(ann), str(tmp_path / "src"), str(tmp_path / "out" / "val"), workers=1)


def test_error_detections_category_without_id(shared, tmp_path):
    from posedual_tf.conversion import detections
    from posedual_tf.conversion.writer import ConversionError

    info = json.loads((shared / "coco/image_info_test_coco.json").read_text())
    info["categories"] = [{"name": "person"}]
    path = tmp_path / "info.json"
    path.write_text(json.dumps(info))
    with pytest.raises(ConversionError, match=rf"^{path}: categories\[0\]: missing field 'id'$"):
        detections.build_entries(str(path), str(shared / "coco/test_coco_det_AP_H_56.json"), str(shared / "coco"))


def test_error_zero_size_crowd_strings_and_one_bad_keypoint_list_are_skipped_with_their_reason(shared, tmp_path):
    from posedual_tf.conversion import coco

    def edit(d):
        d["images"][0].update(width=0)
        first_other = next(a for a in d["annotations"] if a["image_id"] != d["images"][0]["id"])
        first_other["iscrowd"] = "0"
        d["annotations"][-1]["keypoints"] = d["annotations"][-1]["keypoints"][:50]

    ann = _coco_with(shared, tmp_path, edit)
    manifest = coco.convert(str(ann), str(tmp_path / "src"), str(tmp_path / "out" / "val"), workers=1)
    reasons = [s["reason"] for s in manifest["skipped"]]
    assert "images[0]: width/height 0x" in " ".join(reasons)
    assert "iscrowd is '0', expected 0 or 1" in reasons
    assert "'keypoints' holds 50 numbers, expected 3 x 17" in reasons
    assert manifest["num_instances"] > 0


def test_error_png_under_4_px_is_skipped_and_leaves_no_temporary_shard(shared, tmp_path):
    import cv2
    import numpy as np
    from posedual_tf.conversion import coco

    def edit(d):
        d["images"][0]["file_name"] = "tiny.png"

    ann = _coco_with(shared, tmp_path, edit)
    cv2.imwrite(str(tmp_path / "src" / "tiny.png"), np.zeros((3, 3, 3), np.uint8))
    manifest = coco.convert(str(ann), str(tmp_path / "src"), str(tmp_path / "out" / "val"), workers=1)
    assert [s["reason"] for s in manifest["skipped"] if s.get("image") == "tiny.png"] == ["image is 3x3 px, under 4 px on a side"]
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]


def test_error_negative_max_instances_names_the_option(shared, tmp_path):
    proc = run_python(["-m", "tfrecords_tools.coco", "--annotations", str(shared / "coco/test_coco.json"), "--images",
                       str(shared / "coco"), "--output", str(tmp_path / "v"), "--max-instances", "-5"], timeout=120)
    assert proc.returncode == 1 and "flag --max-instances=-5: -5 is not a non-negative integer" in proc.stderr


def test_error_readme_coco_commands_write_where_the_configs_read():

    readme = (REPO / "README.md").read_text() + (REPO / "docs" / "guide.md").read_text()
    cfg = config.load("coco1k_dual")
    assert f"--annotations {cfg.data.val.annotations}" in readme
    outputs = set(re.findall(r"--output (data/coco/\S+)", readme))
    assert {cfg.data.labelled.records, cfg.data.val.records} <= outputs
    assert config.load("coco_wild_dual_res50").data.unlabelled.records in outputs


def test_case09_a_damaged_byte_range_inside_a_record_is_detected(coco_records, tmp_path):
    from posedual_tf.data import record_index, records

    src = pathlib.Path(coco_records)
    for p in src.parent.glob(src.name + "*"):
        if p.is_file():
            shutil.copy(p, tmp_path / p.name)
    prefix = str(tmp_path / src.name)
    index = record_index.load(prefix)
    shard = pathlib.Path(index.paths[index.record_shard[1]])
    at = int(index.record_offset[1] + index.record_length[1] // 2)
    data = bytearray(shard.read_bytes())
    data[at:at + 64] = bytes(64)                     # 64 zero bytes in the middle of record 1's image
    shard.write_bytes(bytes(data))
    reader = record_index.RecordReader(index.paths)
    with pytest.raises(record_index.CorruptRecordError, match=rf"{shard}: the record at byte \d+ fails its CRC"):
        reader(index.record_shard[1], index.record_offset[1], index.record_length[1])
    assert reader(index.record_shard[0], index.record_offset[0], index.record_length[0])   # the others read
    proc = run_python(["-m", "tfrecords_tools.inspect", prefix, "--verify"], timeout=300, cwd=REPO)
    assert proc.returncode == 1 and f"corrupt: 1 records of {shard} do not parse or decode" in proc.stdout
    assert f"verified {records.read_manifest(prefix)['num_images']} records: 1 corrupt" in proc.stdout
    # a damaged header (the record's length) is refused when the shard is indexed
    data[int(index.record_offset[2]) - 12] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(record_index.ShardMismatchError, match=r"the record header at byte \d+ fails its CRC"):
        record_index.load(prefix)


def test_case14b_crowdpose_style_set_converts_trains_and_evaluates_with_its_own_sigmas(shared, tmp_path):
    """12 COCO joints + head + neck (CrowdPose's layout): converted, trained 2 steps, evaluated through
    OKS-NMS and pycocotools with its 14 sigmas; a set with a joint that has no sigma is one line."""
    import numpy as np

    from posedual_tf import joints, training
    from posedual_tf.evaluation import runner
    from posedual_tf.conversion import coco

    data = json.loads((shared / "coco/test_coco.json").read_text())
    long = data["categories"][0]["keypoints"]
    names = long[5:17] + ["head", "neck"]
    data["categories"][0]["keypoints"] = names
    data["categories"][0]["skeleton"] = []
    for a in data["annotations"]:
        k = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        neck = (k[5] + k[6]) / 2 if k[5, 2] and k[6, 2] else np.zeros(3)
        a["keypoints"] = np.concatenate([k[5:17], k[:1], neck[None]]).round(2).ravel().tolist()
        a["num_keypoints"] = int((np.asarray(a["keypoints"])[2::3] > 0).sum())
    ann = tmp_path / "crowdpose_style.json"
    ann.write_text(json.dumps(data))
    manifest = coco.convert(str(ann), str(shared / "coco"), str(tmp_path / "rec" / "cp"), workers=1)
    assert manifest["num_joints"] == 14 and manifest["joint_names"] == names
    sets = [f"workdir={tmp_path / 'run'}", f"data.labelled.records={tmp_path / 'rec' / 'cp'}",
            f"data.val.records={tmp_path / 'rec' / 'cp'}", f"data.val.annotations={ann}",
            "data.labelled.max_instances=0", "model.pretrained=none", "data.image_size=[64,96]",
            "data.heatmap_size=[16,24]", "model.width_multiplier=0.125", "train.epochs=1",
            "train.steps_per_epoch=2", "train.batch_size=4", "train.replica_batch=0", "test.batch_size=8",
            "train.mixed_precision=none"]
    result = training.run(config.load("coco1k_sup", sets), progress="none")
    assert result["final_step"] == 2
    stats = result["metrics"]["net1"]
    assert set(coco_stat for coco_stat in stats) >= {"AP", "AP .5", "AR"} and 0.0 <= stats["AP"] <= 1.0
    res = json.loads((tmp_path / "run" / "results_net1.json").read_text())
    assert res and all(len(r["keypoints"]) == 14 * 3 for r in res)
    # the sigmas it was scored with: COCO's for the 12 COCO joints, CrowdPose's 0.079 for head and neck
    jset = joints.from_manifest(manifest)
    np.testing.assert_allclose(runner.oks_sigmas(jset, []), [.079, .079, .072, .072, .062, .062, .107, .107, .087,
                                                            .087, .089, .089, .079, .079])
    # a joint without a known sigma: one line asking for test.oks_sigmas
    other = joints.coco_set_for_keypoint_names(long[5:17] + ["thorax"])
    with pytest.raises(ValueError, match=r"^test\.oks_sigmas: the joint set \(.*thorax\) has no OKS sigmas"):
        runner.oks_sigmas(other, [])
    with pytest.raises(ValueError, match=r"^test\.oks_sigmas: 2 values, the joint set has 13 joints"):
        runner.oks_sigmas(other, [0.1, 0.1])


def test_code_cites_the_references_own_files_not_the_spec_files():
    """#25: what the package ships cites the reference's file:function or our docs/, never the spec files
    that are not in the repository."""
    cited = [f"{p.relative_to(REPO)}:{i + 1}" for root in ("posedual_tf", "tfrecords_tools", "benchmarks")
             for p in sorted((REPO / root).rglob("*")) if p.suffix in (".py", ".yaml")
             for i, line in enumerate(p.read_text().splitlines()) if "REFERENCE.md" in line or "MULTIAUGS.md" in line]
    assert cited == []


def test_decodability_is_decided_by_the_decoder_training_uses(shared, tmp_path, exported, capfd):
    """A JPEG with bytes after its end-of-image marker and a PNG with bytes after IEND (cameras and phones
    append data) are converted, decoded by training and predicted on; a JPEG or PNG cut in half is skipped by
    the converters' check and by predict, each with its reason (OpenCV alone would fill the cut JPEG with
    grey). Neither prints the decoder's own lines."""
    import cv2
    import numpy as np
    import tensorflow as tf

    from posedual_tf import api, predict
    from posedual_tf.conversion import writer
    from posedual_tf.data import records

    jpeg = (shared / "coco/000000000785.jpg").read_bytes()
    png = cv2.imencode(".png", cv2.imread(str(shared / "coco/000000000785.jpg")))[1].tobytes()
    want = cv2.imread(str(shared / "coco/000000000785.jpg"))[..., ::-1]          # RGB, OpenCV's decode
    folder = tmp_path / "images"
    folder.mkdir()
    cases = {"trailing.jpg": (jpeg + bytes(range(210)), True), "trailing.png": (png + b"\0" * 40 + b"EXIF", True),
             "cut.jpg": (jpeg[:len(jpeg) // 2], False), "cut.png": (png[:len(png) // 2], False)}
    for name, (data, ok) in cases.items():
        (folder / name).write_bytes(data)
        got, reason, size = writer.check_image(str(folder / name))
        if ok:
            assert reason == "" and size == want.shape[:2], (name, reason)
            pixels = records.decode_window(tf.constant(got), tf.constant([0, 0, size[0], size[1]])).numpy()
            assert np.abs(pixels.astype(float) - want).mean() < 1.0, name        # what training crops from
        else:
            assert got is None and reason.startswith("undecodable (truncated or damaged"), (name, reason)
    _, _, saved = exported
    paths = sorted(str(p) for p in folder.iterdir())
    capfd.readouterr()
    predict.run(saved, paths, str(tmp_path / "out"), None, progress=False, whole_image=True)
    err = capfd.readouterr().err
    assert "Premature end" not in err and "libpng" not in err, err       # the reasons say it, in our words
    entries = {pathlib.Path(e["file"]).name: e for e in json.loads((tmp_path / "out" / "images.json").read_text())["images"]}
    for name, (data, ok) in cases.items():
        if ok:
            assert entries[name]["people"] == 1 and "skipped" not in entries[name], entries[name]
            assert api.predict_image(saved, data, [[0, 0, 100, 200]])["keypoints"].shape == (1, 17, 3)
        else:
            assert entries[name]["skipped"].startswith("undecodable (truncated or damaged"), entries[name]
            with pytest.raises(ValueError, match=r"^image: undecodable \(truncated or damaged"):
                api.predict_image(saved, data, [[0, 0, 100, 200]])
    # pixels are taken as they are (#42: tests/test_predict_inputs.py); float pixels are one line
    assert api.predict_image(saved, want.copy(), [[0, 0, 100, 200]])["keypoints"].shape == (1, 17, 3)
    with pytest.raises(ValueError, match=r"^image: expected uint8 pixels \(0-255\), got a float64 array"):
        api.predict_image(saved, want / 255.0, [[0, 0, 100, 200]])
