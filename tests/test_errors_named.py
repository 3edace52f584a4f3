"""No raw error text reaches a user (issue #41, rule 4, beyond the API's arguments): a file that is not what
it should be is named with what was expected; a model's bad outputs name the model and the image; a
workdir's checkpoint folder that training did not write is named as such, not as a damaged state file.
"""
from __future__ import annotations

import json
import os

import pytest

from posedual_tf import files
from tests.conftest import REPO, run_python


# ------------------------------------------------------------------------------ every JSON file read from a user
@pytest.mark.parametrize("content, words", [
    (b"not json {", "not valid JSON (Expecting value at line 1, column 1)"),
    (b"\xff\xfe{}", "not UTF-8 text (byte 0 is 0xff)"),
])
def test_a_json_file_that_is_not_json_is_named_with_what_was_expected(tmp_path, content, words):
    from posedual_tf import predict
    from posedual_tf.conversion import annotations
    from posedual_tf.conversion.writer import ConversionError
    from posedual_tf.data import records
    from posedual_tf.evaluation import coco

    cases = [
        (tmp_path / "set.json", lambda p: records.read_manifest(str(p)[:-5]), "a dataset manifest written by tfrecords_tools"),
        (tmp_path / "boxes.json", lambda p: predict.load_boxes(str(p), 0.0, {"a.jpg": 1}), "boxes: COCO detections"),
        (tmp_path / "ann.json", lambda p: annotations.load_json(str(p)), "an annotation file"),
        (tmp_path / "res.json", lambda p: coco.evaluate_coco(str(p), str(tmp_path / "ann.json")),
         "COCO keypoint results"),
    ]
    for path, read, expected in cases:
        path.write_bytes(content)
        with pytest.raises((ValueError, ConversionError)) as e:
            read(path)
        message = str(e.value)
        assert message.startswith(f"{path}: {words}") and expected in message and "\n" not in message, message
    (tmp_path / "ann.json").write_bytes(content)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(files.BadFileError, match=rf"^{folder}: is a folder; expected a dataset manifest"):
        records.read_manifest(str(folder)[:-5])


def test_a_manifest_that_is_json_of_another_shape_and_inspect_say_so_in_one_line(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("garbage")
    for prefix, words in [("list", "holds a JSON list, not a dataset manifest written by tfrecords_tools"),
                          ("bad", "not valid JSON (Expecting value at line 1, column 1); expected a dataset manifest")]:
        done = run_python(["-m", "tfrecords_tools.inspect", str(tmp_path / prefix)], cwd=str(REPO))
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [f"error: {tmp_path / prefix}.json: {words}" + (
            " written by tfrecords_tools" if prefix == "bad" else "")], done.stderr


def test_a_best_json_that_is_not_trainings_names_itself(tmp_path):
    from posedual_tf import callbacks

    (tmp_path / "best").mkdir()
    start = lambda: callbacks.Validation(lambda split, tag: {}, [], None, str(tmp_path), 1, 1)
    for text in ("{]", '{"perf": "high"}', "[0.5]"):
        (tmp_path / "best" / "best.json").write_text(text)
        with pytest.raises(files.BadFileError, match=rf"^{tmp_path / 'best' / 'best.json'}: "):
            start()
    (tmp_path / "best" / "best.json").write_text(json.dumps({"perf": 0.25}))
    assert start().best == 0.25


# ------------------------------------------------------------------------------ a model's bad outputs
@pytest.mark.parametrize("outputs, words", [
    ({"detection_boxes": [[[float("nan"), 0.2, 0.9, 0.6]]], "detection_classes": [[1.0]],
      "detection_scores": [[0.9]]}, "returned 1 of 1 detections with NaN or infinite numbers for this"),
    ({"detection_boxes": [[[0.1, 0.2, 0.9, 0.6]]], "detection_classes": [[1.0, 1.0]],
      "detection_scores": [[0.9, 0.5]]}, "returned (1, 1, 4) boxes, (1, 2) classes and (1, 2) scores for this"),
])
def test_a_detector_returning_no_boxes_skips_the_image_naming_the_detector(tiny_export, shared, tmp_path,
                                                                          outputs, words):
    import tensorflow as tf

    from posedual_tf import predict
    from posedual_tf.detector import ODDetector
    from tests.test_export import _od_saved_model

    _, _, saved = tiny_export
    det = _od_saved_model(tmp_path / "od", outputs={k: tf.constant(v) for k, v in outputs.items()})
    photo = str(shared / "coco/000000196141.jpg")
    results = predict.run(saved, [photo], str(tmp_path / "out"), None, progress=False,
                          detector=ODDetector(det, 1, 0.5))
    assert results == []
    entry = json.loads((tmp_path / "out" / "images.json").read_text())["images"][0]
    assert entry["skipped"].startswith(f"--detector {det}: {words} 640x") and entry["people"] == 0, entry


# ------------------------------------------------------------------------------ the checkpoint folder
@pytest.mark.parametrize("kind", ["link", "file", "unlisted"])
def test_a_ckpt_that_training_did_not_write_is_named_as_such(tmp_path, kind):
    from posedual_tf import config, resume

    work, mine = tmp_path / "run", tmp_path / "mine"
    mine.mkdir()
    (mine / "checkpoint").write_text("my own notes")
    files.claim(str(work), "train")
    if kind == "link":
        os.symlink(mine, work / "ckpt")
        what = f"a link to {mine}"
    elif kind == "file":
        (work / "ckpt").write_text("x")
        what = "a file"
    else:
        (work / "ckpt").mkdir()
        (work / "ckpt" / "checkpoint").write_text("x")
        what = "a folder that training did not write (not on the workdir's list)"
    cfg = config.load("demo_sup", [f"workdir={work}"])
    with pytest.raises(resume.ResumeMismatchError) as e:
        resume.resume_point(cfg)
    assert str(e.value) == (f"{work / 'ckpt'}: is {what}, not the checkpoint folder training writes; nothing was "
                            "written (move it away, or train in another workdir)")
    assert "damaged" not in str(e.value) and (mine / "checkpoint").read_text() == "my own notes"


# ------------------------------------------------------------------------------ int8 calibration's records
def test_calibration_records_are_named_by_the_flag_not_the_config_field(shared, coco_records, tmp_path):
    from posedual_tf import config, tflite
    from tests.conftest import TINY

    cfg = config.load("coco1k_dual", TINY)
    ann = str(shared / "coco/test_coco.json")
    (tmp_path / "junk.json").write_text("{]")
    cases = [
        (str(tmp_path / "none"), 5, f"--calibration {tmp_path / 'none'}: no converted dataset there "
                                    f"({tmp_path / 'none'}.json is missing); give the prefix of TFRecords"),
        (ann, 5, f"--calibration {ann}: no converted dataset there ({ann}.json is missing) (a prefix names no "
                 f".json: {ann[:-5]})"),
        (str(tmp_path / "junk"), 5, f"--calibration {tmp_path / 'junk'}: {tmp_path / 'junk'}.json: not valid JSON"),
        (coco_records, 0, "--calibration-people 0: expected at least 1 person to calibrate on"),
    ]
    for prefix, people, start in cases:
        with pytest.raises(tflite.TFLiteExportError) as e:
            tflite.calibration_crops(cfg, prefix, people)
        message = str(e.value)
        assert message.startswith(start) and "data.val" not in message and "demo" not in message, message
    assert len(tflite.calibration_crops(cfg, coco_records, 3)) == 3       # the records hold people


# ------------------------------------------------------------------------------ OS errors name the file
def _file_size_limit():
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


def test_a_file_size_limit_names_the_file_being_written_not_its_temporary_name(shared, tmp_path):
    """Under ``ulimit -f`` (30 kB): a converter's shard (written by TensorFlow) and a JSON file written by
    ``files.write_atomic`` (by Python) each fail in one line naming the file they were to become; the
    earlier file of that name keeps what it held."""
    out = tmp_path / "rec" / "val"
    done = run_python(["-m", "tfrecords_tools.coco", "--annotations", str(shared / "coco/test_coco.json"), "--images",
                       str(shared / "coco"), "--output", str(out), "--workers", "1"], cwd=str(REPO),
                      preexec_fn=_file_size_limit)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (f"error: {out}-00000-of-00001.tfrecord: File too large (while "
                                                    "writing it; nothing was replaced)"), done.stderr
    assert not os.path.exists(f"{out}.json") and not os.path.exists(f"{out}-00000-of-00001.tfrecord")
    target = tmp_path / "kept.json"
    target.write_text('{"before": 1}')
    code = ("import sys; from posedual_tf import cli, files\n"
            "try:\n    files.write_json_atomic(sys.argv[1], {'x': 'y' * 100_000})\n"
            "except OSError as e:\n    print(cli.one_line(e))\n")
    done = run_python(["-c", code, str(target)], cwd=str(REPO), preexec_fn=_file_size_limit,
                      env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.stdout.strip() == f"{target}: File too large (while writing it; nothing was replaced)", done
    assert target.read_text() == '{"before": 1}' and os.listdir(tmp_path).count("kept.json") == 1
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_a_checkpoint_that_cannot_be_written_names_the_checkpoint(tmp_path):
    """Training under ``ulimit -f`` (500 kB: the records fit, a checkpoint does not): TensorFlow's error
    (``{{function_node ...}} .../ckpt-3_temp/part-...tempstateN: File too large [Op:SaveV2]``) is one line
    naming the checkpoint it was to become."""
    workdir = tmp_path / "run"

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))

    from tests.conftest import SMALL_DEMO

    done = run_python(["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={workdir}", *SMALL_DEMO,
                       "--set=train.epochs=1"], cwd=str(REPO), preexec_fn=limit, timeout=600)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (f"error: {workdir}/ckpt/ckpt-3: File too large (while writing "
                                                    "it; nothing was replaced)"), done.stderr[-2000:]


def test_out_of_memory_names_the_settings_that_lower_it():
    """A device out of memory, as TensorFlow words it in a compiled step and in an eager op (no CPU run can
    exhaust its allocator, so the text is TensorFlow's own)."""
    import tensorflow as tf

    from posedual_tf import cli

    oom = ("OOM when allocating tensor with shape[32,64,128,96] and type float on "
           "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")
    graph = tf.errors.ResourceExhaustedError(None, None, f"Graph execution error:\n\nDetected at node x defined at "
                                                         f"(most recent call last):\n  File \"a.py\"\n{oom}\n\t "
                                                         f"[[{{{{node x}}}}]]")
    eager = tf.errors.ResourceExhaustedError(None, None, f"{{{{function_node __wrapped__Conv2D_device_/job:localhost"
                                                         f"/replica:0/task:0/device:GPU:0}}}} {oom} [Op:Conv2D] name: ")
    for e in (graph, eager):
        assert cli.one_line(e) == (f"out of memory ({oom}): lower the batch size (train.batch_size, test.batch_size) "
                                   f"or the input size (data.image_size), or free the device")
