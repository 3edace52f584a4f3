"""Nothing lost, nothing silent, part 2: each test is named after the bad-input case it covers
(``case01`` ... of the second bad-input probe) and checks that the user's files stay byte for byte,
or that the bad input ends in one line naming the file, field or setting."""
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
from tests.conftest import REPO, run_python

COCO_NAMES = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"]


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _coco_copy(shared, folder: pathlib.Path, file_names: dict[str, str] | None = None) -> pathlib.Path:
    """test_coco.json (4 images) copied into ``folder`` with its images; ``file_names`` renames entries."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((shared / "coco/test_coco.json").read_text())
    for img in data["images"]:
        img["file_name"] = (file_names or {}).get(img["file_name"], img["file_name"])
    for name in COCO_NAMES:
        shutil.copy(shared / "coco" / name, folder / name)
    path = folder / "x.json"
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------- files the tools did not write

def test_case01_converter_never_replaces_its_annotation_file(shared, tmp_path):
    from tfrecords_tools import coco
    from tfrecords_tools.writer import ConversionError

    ann = _coco_copy(shared, tmp_path / "A")
    before = ann.read_bytes()
    with pytest.raises(ConversionError, match=r"x\.json would replace the input file"):
        coco.convert(str(ann), str(tmp_path / "A"), str(tmp_path / "A" / "x"), workers=1)
    assert ann.read_bytes() == before
    assert not list((tmp_path / "A").glob("x-*.tfrecord"))
    # any other PREFIX.json that is not our manifest is kept too
    other = tmp_path / "B"
    other.mkdir()
    (other / "val.json").write_text('{"mine": 1}')
    with pytest.raises(ConversionError, match="is not a manifest written by tfrecords_tools"):
        coco.convert(str(ann), str(tmp_path / "A"), str(other / "val"), workers=1)
    assert (other / "val.json").read_text() == '{"mine": 1}'
    (other / "val.json").write_text("not json at all")
    with pytest.raises(ConversionError, match=r"val\.json exists and is not a manifest written by tfrecords_tools"):
        coco.convert(str(ann), str(tmp_path / "A"), str(other / "val"), workers=1)
    assert (other / "val.json").read_text() == "not json at all"


def test_case02_converter_keeps_another_tools_shards(shared, tmp_path):
    from tfrecords_tools import coco
    from tfrecords_tools.writer import ConversionError

    ann = _coco_copy(shared, tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    theirs = {f"train-{i:05d}-of-00003.tfrecord": f"their shard {i}".encode() for i in range(3)}
    theirs["train-00000-of-00001.tfrecord"] = b"their single shard"
    for name, data in theirs.items():
        (out / name).write_bytes(data)
    with pytest.raises(ConversionError, match=r"train-00000-of-00001\.tfrecord exists and is not listed"):
        coco.convert(str(ann), str(tmp_path / "src"), str(out / "train"), num_shards=1, workers=1)
    assert _snapshot(out) == theirs                 # nothing replaced, nothing deleted, nothing added
    # without a name clash the conversion runs, and the other tool's shards stay
    (out / "train-00000-of-00001.tfrecord").unlink()
    del theirs["train-00000-of-00001.tfrecord"]
    manifest = coco.convert(str(ann), str(tmp_path / "src"), str(out / "train"), num_shards=1, workers=1)
    assert manifest["num_images"] == 4
    assert all((out / n).read_bytes() == d for n, d in theirs.items())
    # our own shards are still ours to clean up: a re-conversion into 2 shards removes our single one
    coco.convert(str(ann), str(tmp_path / "src"), str(out / "train"), num_shards=2, workers=1)
    assert not (out / "train-00000-of-00001.tfrecord").exists()
    assert (out / "train-00000-of-00002.tfrecord").exists() and all((out / n).read_bytes() == d for n, d in theirs.items())


def test_case03_inspect_draw_keeps_user_files_and_stays_inside(coco_records, tmp_path):
    from tfrecords_tools.inspect import drawing_name

    user = tmp_path / "mine"
    user.mkdir()
    (user / "pic.png").write_bytes(b"my picture")
    args = [sys.executable, "-m", "tfrecords_tools.inspect", coco_records, "--limit", "4", "--draw"]
    proc = subprocess.run(args + [str(user)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"error: --draw {user}: holds files posedual_tf did not write (pic.png); nothing was written "
        "(choose a new or empty folder)")
    assert _snapshot(user) == {"pic.png": b"my picture"}
    fresh = tmp_path / "fresh"
    proc = subprocess.run(args + [str(fresh)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pngs = sorted(p.name for p in fresh.glob("*.png"))
    assert len(pngs) == 4 and f"drew 4 images into {fresh}" in proc.stdout
    # a second inspect into its own folder replaces only its drawings
    assert subprocess.run(args + [str(fresh)], capture_output=True, timeout=300, cwd=REPO).returncode == 0
    # names from records: never outside the folder, never two records on one drawing
    names = [drawing_name(i, n) for i, n in enumerate([b"../../up.jpg", b"/abs/pic.jpg", b"pic.jpg", b"pic.png",
                                                        b"a/pic.jpg", b"..", b"sub\\..\\x.jpg"])]
    assert len(set(names)) == len(names)
    assert all(files.inside(str(tmp_path), n) is not None and "/" not in n and not n.startswith(".") for n in names)


def _tiny_cfg(tmp_path, *extra):
    return config.load("demo_sup", [f"workdir={tmp_path / 'run'}", "data.image_size=[64,96]",
                                    "data.heatmap_size=[16,24]", "model.width_multiplier=0.125", *extra])


def test_case04_evaluate_output_keeps_user_files(coco_records, shared, tmp_path):
    from posedual_tf.evaluation import runner
    from posedual_tf.models import builder

    user = tmp_path / "results"
    user.mkdir()
    (user / "metrics.json").write_text("my metrics")
    (user / "results_net1.json").write_text("my results")
    cfg = _tiny_cfg(tmp_path, f"data.val.records={coco_records}", f"data.val.annotations={shared / 'coco/test_coco.json'}",
                    "data.val.source=coco")
    nets = builder.build_networks(cfg)
    with pytest.raises(files.NotOursError, match=rf"--output {user}: holds files posedual_tf did not write"):
        runner.evaluate(cfg, nets, workdir=str(user), progress=False)
    assert _snapshot(user) == {"metrics.json": b"my metrics", "results_net1.json": b"my results"}
    # a new folder is written, and an evaluation may write into it again
    out = tmp_path / "eval"
    for _ in range(2):
        metrics = runner.evaluate(cfg, nets, workdir=str(out), progress=False)
    assert json.loads((out / "metrics.json").read_text())["net1"]["AP"] == metrics["net1"]["AP"]
    # a file a user put there later is not replaced
    (out / "results_net1_unl.json").write_text("mine")
    with pytest.raises(files.NotOursError, match=r"results_net1_unl\.json: exists and was not written by posedual_tf"):
        files.own(str(out), "results_net1_unl.json")


def test_case05_convert_torch_keeps_a_trained_runs_weights(tmp_path):
    from posedual_tf import checkpoints, convert_torch
    from posedual_tf.models import builder

    cfg = config.load("demo_dual", ["model.width_multiplier=0.125", "data.image_size=[64,96]",
                                    "data.heatmap_size=[16,24]"])
    nets = builder.build_networks(cfg)
    final = tmp_path / "run" / "final"
    checkpoints.save_nets(nets, str(final))                    # a trained run's final/ (net1 + net2)
    before = _snapshot(final)
    with pytest.raises(files.NotOursError, match=r"--output .*final: holds posedual_tf's train output; not replaced"):
        convert_torch.convert(cfg, str(tmp_path / "any.pth"), str(final))
    assert _snapshot(final) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "conversion.json").write_text("my notes")
    with pytest.raises(files.NotOursError, match="exists and was not written by posedual_tf"):
        convert_torch.convert(cfg, str(tmp_path / "any.pth"), str(mine))
    assert _snapshot(mine) == {"conversion.json": b"my notes"}


def test_case06_train_refuses_a_users_folder_as_workdir(tmp_path):
    from posedual_tf import training

    work = tmp_path / "run"
    (work / "best").mkdir(parents=True)
    mine = {"config.yaml": b"my config", "metrics.json": b"{}", "best/net1.weights.h5": b"my weights"}
    for name, data in mine.items():
        (work / name).write_bytes(data)
    with pytest.raises(files.NotOursError, match=rf"workdir {work}: holds files posedual_tf did not write \(best, "
                                                 r"config\.yaml, metrics\.json\)"):
        training.run(_tiny_cfg(tmp_path))
    assert _snapshot(work) == mine
    # through the command line: one line, rc 1
    proc = run_python(["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={work}"], timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(f"error: workdir {work}: holds files")
    assert _snapshot(work) == mine


def test_case07_quick_study_never_replaces_the_published_page(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import collapse_study

    out = tmp_path / "docs"
    out.mkdir()
    for suffix in (".json", ".md", ".png"):
        shutil.copy(REPO / "docs" / f"collapse_study{suffix}", out / f"collapse_study{suffix}")
    before = _snapshot(out)
    with pytest.raises(SystemExit, match=r"holds a study made with other settings \(.*epochs.*\)"):
        collapse_study.main(["--quick", "--workdir", str(tmp_path / "study"), "--out", str(out)])
    assert _snapshot(out) == before and not (tmp_path / "study").exists()


# ----------------------------------------------------------------------------------- silently wrong

def test_case08_coco_file_names_are_read_only_inside_images(shared, tmp_path):
    from tfrecords_tools import coco

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(shared / "coco" / COCO_NAMES[0], outside / "x.jpg")
    ann = _coco_copy(shared, tmp_path / "images", {COCO_NAMES[0]: "../outside/x.jpg",
                                                   COCO_NAMES[1]: str(outside / "x.jpg")})
    manifest = coco.convert(str(ann), str(tmp_path / "images"), str(tmp_path / "rec" / "val"), workers=1)
    assert manifest["num_images"] == 2
    reasons = {s["image"]: s["reason"] for s in manifest["skipped"] if "image" in s}
    assert set(reasons) == {"../outside/x.jpg", str(outside / "x.jpg")}
    assert all("leaves the images folder" in r for r in reasons.values())


def test_case10_config_stating_a_section_twice_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: demo_dual\ntrain:\n  epochs: 3\nmodel:\n  width_multiplier: 0.5\ntrain:\n  lr: 0.1\n")
    with pytest.raises(config.ConfigError, match=r"c\.yaml: line 6, column 1: .*'train' is stated twice \(first at line 2\)"):
        config.load(str(path))


def test_case11_mpii_file_names_of_one_number_do_not_share_an_id(shared, tmp_path):
    from tfrecords_tools import mpii

    person = {"center": [100.0, 100.0], "scale": 1.0, "joints": [[50.0, 60.0]] * 16, "joints_vis": [1] * 16}
    ann = tmp_path / "mpii.json"
    ann.write_text(json.dumps([{**person, "image": "1.jpg"}, {**person, "image": "01.jpg"},
                               {**person, "image": "2.jpg"}]))
    entries, skipped = mpii.build_entries(str(ann), str(tmp_path))
    assert [(e.filename, e.image_id) for e in entries] == [("1.jpg", 1), ("2.jpg", 2)]
    assert skipped == [{"image": "01.jpg", "image_id": 1, "instances": 1,
                        "reason": "image id 1 (from the file name) is already 1.jpg's"}]


def test_case14_checkpoint_with_nan_weights_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from posedual_tf import convert_torch
    from tests import torch_reference as tr

    ref = tr.randomise(tr.PoseResNet(18), seed=1)
    state = ref.state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "nan.pth")
    cfg = config.load("coco1k_sup", [])
    with pytest.raises(ValueError, match=r"nan\.pth: net1 .* holds 1 NaN/inf values of 73728; the checkpoint is damaged"):
        convert_torch.convert(cfg, str(tmp_path / "nan.pth"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_case15_second_writer_of_a_folder_is_refused(tmp_path):
    with files.lock(str(tmp_path), "a training run"):
        with pytest.raises(files.NotOursError, match=rf"{tmp_path}: a training run is already running there "
                                                     rf"\(pid {os.getpid()}\)"):
            with files.lock(str(tmp_path), "a training run"):
                pass
    with files.lock(str(tmp_path), "a training run"):         # released when the first one ended
        pass


def test_case15_training_takes_the_workdir_lock(tmp_path):
    from posedual_tf import demo, training

    cfg = config.load("demo_sup", [f"workdir={tmp_path / 'run'}", "data.synthetic.labelled_images=4",
                                   "data.synthetic.val_images=2", "data.image_size=[64,96]",
                                   "data.heatmap_size=[16,24]", "model.width_multiplier=0.125"])
    demo.prepare_data(cfg)
    with files.lock(str(tmp_path / "run"), "a training run"):           # another process's run, as it were
        with pytest.raises(files.NotOursError, match=r"run: a training run is already running there"):
            training.run(cfg, progress="none")
    assert not (tmp_path / "run" / "ckpt").exists() and not (tmp_path / "run" / "config.yaml").exists()


def test_case16_garbage_checkpoint_state_is_refused_not_overwritten(tmp_path):
    from posedual_tf import training

    cfg = _tiny_cfg(tmp_path)
    state = tmp_path / "run" / "ckpt" / "checkpoint"
    files.claim(str(tmp_path / "run"), "train")
    files.own(str(tmp_path / "run"), "ckpt")
    state.parent.mkdir()
    for text in ("garbage {{ not a proto", 'model_checkpoint_path: "ckpt-7"\n'):       # also: deleted ckpt-N
        state.write_text(text)
        with pytest.raises(training.ResumeMismatchError, match=r"ckpt/checkpoint: does not name a checkpoint that exists"):
            training.run(cfg)
        assert state.read_text() == text


# ------------------------------------------------------------------- errors that name what is wrong

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


def test_configs_are_installed_with_the_package(tmp_path):
    """#25: a non-editable install (a wheel) carries the named configs."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import zipfile

    (wheel,) = tmp_path.glob("posedual_tf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {pathlib.PurePosixPath(n).stem for n in names if n.startswith("posedual_tf/configs/") and n.endswith(".yaml")}
    assert shipped == set(config.available()) and "demo_dual" in shipped


# ----------------------------------------------------------------- wave 2: the rest of the probe

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
        "error: give one of --image FILE or --images DIR, not both"


def test_case19_ctrl_c_is_one_line(tmp_path):
    import signal
    import time

    script = ("import time\nfrom posedual_tf import cli\n"
              "def main(argv):\n    print('ready', flush=True)\n    time.sleep(60)\n"
              "cli.run(main)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted (Ctrl-C); files already written are complete, a re-run resumes"]


def test_case21_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    from tfrecords_tools import writer

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
    ann = _coco_copy(shared, tmp_path / "src")
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
    from tfrecords_tools import coco
    from tfrecords_tools.writer import ConversionError

    ann = _coco_with(shared, tmp_path, edit)
    with pytest.raises(ConversionError, match=rf"^{ann}: {expected}$"):
        coco.convert(str(ann), str(tmp_path / "src"), str(tmp_path / "out" / "val"), workers=1)
    assert not (tmp_path / "out").exists()


def test_error_json_with_a_latin1_byte_names_the_file(shared, tmp_path):
    from tfrecords_tools import coco
    from tfrecords_tools.writer import ConversionError

    ann = _coco_copy(shared, tmp_path / "src")
    ann.write_bytes(ann.read_bytes().replace(b'"images"', b'"images\xe9"', 1))
    with pytest.raises(ConversionError, match=rf"^{ann}: not UTF-8 text \(byte \d+ is 0xe9\)"):
        coco.convert(str(ann), str(tmp_path / "src"), str(tmp_path / "out" / "val"), workers=1)


def test_error_detections_category_without_id(shared, tmp_path):
    from tfrecords_tools import detections
    from tfrecords_tools.writer import ConversionError

    info = json.loads((shared / "coco/image_info_test_coco.json").read_text())
    info["categories"] = [{"name": "person"}]
    path = tmp_path / "info.json"
    path.write_text(json.dumps(info))
    with pytest.raises(ConversionError, match=rf"^{path}: categories\[0\]: missing field 'id'$"):
        detections.build_entries(str(path), str(shared / "coco/test_coco_det_AP_H_56.json"), str(shared / "coco"))


def test_error_zero_size_crowd_strings_and_one_bad_keypoint_list_are_skipped_with_their_reason(shared, tmp_path):
    from tfrecords_tools import coco

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
    from tfrecords_tools import coco

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
    assert proc.returncode == 2 and "argument --max-instances: expected an integer >= 0, got '-5'" in proc.stderr


def _tiny_checkpoint(tmp_path):
    import tensorflow as tf
    from posedual_tf import checkpoints
    from posedual_tf.models import builder

    cfg = _tiny_cfg(tmp_path)
    nets = builder.build_networks(cfg)
    ckpt = checkpoints.training_checkpoint(nets)
    prefix = ckpt.write(str(tmp_path / "ckpt" / "ckpt-1"))
    return cfg, nets, prefix, tf


@pytest.mark.parametrize("damage", ["truncated data", "garbage index"])
def test_error_damaged_checkpoint_is_one_line(tmp_path, damage):
    from posedual_tf import checkpoints

    _, nets, prefix, _ = _tiny_checkpoint(tmp_path)
    if damage == "truncated data":
        (data,) = (tmp_path / "ckpt").glob("ckpt-1.data-*")
        data.write_bytes(data.read_bytes()[:1000])
    else:
        pathlib.Path(prefix + ".index").write_bytes(b"garbage" * 10)
    with pytest.raises(checkpoints.ArchitectureMismatchError, match=rf"^{prefix}: (cannot be read, the checkpoint is "
                                                                    r"damaged|does not fit)"):
        checkpoints.restore_training(checkpoints.training_checkpoint(nets), prefix)


def test_case17_resume_states_changed_settings_refuses_meaning_changes_and_follows_a_moved_workdir(tmp_path):
    from posedual_tf import training
    from posedual_tf.config import dump

    old = tmp_path / "old"
    cfg = config.load("demo_sup", [f"workdir={old}"])
    files.claim(str(old), "train")
    files.write_atomic(files.own(str(old), "config.yaml"), dump(cfg))
    files.own(str(old), "ckpt")
    _tiny_checkpoint(old)                   # writes old/ckpt/ckpt-1.*
    (old / "ckpt" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    moved = tmp_path / "moved"
    os.rename(old, moved)
    again = config.load("demo_sup", [f"workdir={moved}", "train.lr=0.5"])
    assert training.check_resume(again) == [f"train.lr: {cfg.train.lr!r} -> 0.5"]       # data paths moved with it
    for setting in ("train.batch_size=3", "train.steps_per_epoch=7", "method.sup_weight=0.25"):
        with pytest.raises(training.ResumeMismatchError, match=rf"holds a run trained with {setting.split('=')[0]}="):
            training.check_resume(config.load("demo_sup", [f"workdir={moved}", setting]))


def test_error_unfinished_checkpoint_saves_are_removed_only_in_our_ckpt(tmp_path):
    from posedual_tf import training

    work = tmp_path / "run"
    files.claim(str(work), "train")
    (work / "ckpt" / "ckpt-4_temp").mkdir(parents=True)
    assert training.remove_unfinished_saves(str(work)) == []                 # ckpt/ not on the list: untouched
    assert (work / "ckpt" / "ckpt-4_temp").exists()
    shutil.rmtree(work / "ckpt")
    files.own(str(work), "ckpt")
    (work / "ckpt" / "ckpt-4_temp").mkdir(parents=True)
    (work / "ckpt" / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    assert training.remove_unfinished_saves(str(work)) == [str(work / "ckpt" / "ckpt-4_temp")]
    assert not (work / "ckpt" / "ckpt-4_temp").exists()


def test_error_readme_coco_commands_write_where_the_configs_read():

    readme = (REPO / "README.md").read_text()
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
    from tfrecords_tools import coco

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
            "train.steps_per_epoch=2", "train.batch_size=4", "test.batch_size=8", "train.mixed_precision=none"]
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


def test_case20_checkpoint_of_another_depth_is_one_line_without_tf_warnings(tmp_path):
    """Resuming from a checkpoint of ResNet-18 into ResNet-34: one line, and none of TF's deferred
    'value not found' warnings when the process ends."""
    script = (
        "import sys\n"
        "from posedual_tf import checkpoints, config\n"
        "from posedual_tf.models import builder\n"
        "sets = ['data.image_size=[64,96]', 'data.heatmap_size=[16,24]', 'model.width_multiplier=0.125']\n"
        "nets = builder.build_networks(config.load('coco1k_sup', sets))\n"
        "prefix = checkpoints.training_checkpoint(nets).write(sys.argv[1])\n"
        "deeper = builder.build_networks(config.load('coco1k_sup', sets + ['model.depth=34']))\n"
        "try:\n"
        "    checkpoints.restore_training(checkpoints.training_checkpoint(deeper), prefix)\n"
        "except checkpoints.ArchitectureMismatchError as e:\n"
        "    print('error:', e)\n")
    proc = run_python(["-c", script, str(tmp_path / "ckpt-1")], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(f"error: {tmp_path / 'ckpt-1'}: does not fit the config's networks")
    # (TF's C++ start-up lines are not quieted in a bare ``python -c``; they say nothing of checkpoints)
    assert [line for line in proc.stderr.splitlines() if "checkpoint" in line.lower() or "unrestored" in line] == []


def test_code_cites_the_references_own_files_not_the_spec_files():
    """#25: what the package ships cites the reference's file:function or our docs/, never the spec files
    that are not in the repository."""
    cited = [f"{p.relative_to(REPO)}:{i + 1}" for root in ("posedual_tf", "tfrecords_tools", "benchmarks")
             for p in sorted((REPO / root).rglob("*")) if p.suffix in (".py", ".yaml")
             for i, line in enumerate(p.read_text().splitlines()) if "REFERENCE.md" in line or "MULTIAUGS.md" in line]
    assert cited == []
