"""The ownership rule, the path rule and the workdir lock (cases 1-8 and 15 of the second bad-input
probe): the user's files stay byte for byte, and a folder we did not write is refused in one line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from posedual_tf import config, files
from tests.conftest import COCO_NAMES, REPO, coco_copy, run_python, snapshot, tiny_demo_cfg


def test_case01_converter_never_replaces_its_annotation_file(shared, tmp_path):
    from posedual_tf.conversion import coco
    from posedual_tf.conversion.writer import ConversionError

    ann = coco_copy(shared, tmp_path / "A")
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
    from posedual_tf.conversion import coco
    from posedual_tf.conversion.writer import ConversionError

    ann = coco_copy(shared, tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    theirs = {f"train-{i:05d}-of-00003.tfrecord": f"their shard {i}".encode() for i in range(3)}
    theirs["train-00000-of-00001.tfrecord"] = b"their single shard"
    for name, data in theirs.items():
        (out / name).write_bytes(data)
    with pytest.raises(ConversionError, match=r"train-00000-of-00001\.tfrecord exists and is not listed"):
        coco.convert(str(ann), str(tmp_path / "src"), str(out / "train"), num_shards=1, workers=1)
    assert snapshot(out) == theirs                 # nothing replaced, nothing deleted, nothing added
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
    assert snapshot(user) == {"pic.png": b"my picture"}
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


def test_case04_evaluate_output_keeps_user_files(coco_records, shared, tmp_path):
    from posedual_tf.evaluation import runner
    from posedual_tf.models import builder

    user = tmp_path / "results"
    user.mkdir()
    (user / "metrics.json").write_text("my metrics")
    (user / "results_net1.json").write_text("my results")
    cfg = tiny_demo_cfg(tmp_path, f"data.val.records={coco_records}", f"data.val.annotations={shared / 'coco/test_coco.json'}",
                    "data.val.source=coco")
    nets = builder.build_networks(cfg)
    with pytest.raises(files.NotOursError, match=rf"--output {user}: holds files posedual_tf did not write"):
        runner.evaluate(cfg, nets, workdir=str(user), progress=False)
    assert snapshot(user) == {"metrics.json": b"my metrics", "results_net1.json": b"my results"}
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
    before = snapshot(final)
    with pytest.raises(files.NotOursError, match=r"--output .*final: holds posedual_tf's train output; not replaced"):
        convert_torch.convert(cfg, str(tmp_path / "any.pth"), str(final))
    assert snapshot(final) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "conversion.json").write_text("my notes")
    with pytest.raises(files.NotOursError, match="exists and was not written by posedual_tf"):
        convert_torch.convert(cfg, str(tmp_path / "any.pth"), str(mine))
    assert snapshot(mine) == {"conversion.json": b"my notes"}


def test_case06_train_refuses_a_users_folder_as_workdir(tmp_path):
    from posedual_tf import training

    work = tmp_path / "run"
    (work / "best").mkdir(parents=True)
    mine = {"config.yaml": b"my config", "metrics.json": b"{}", "best/net1.weights.h5": b"my weights"}
    for name, data in mine.items():
        (work / name).write_bytes(data)
    with pytest.raises(files.NotOursError, match=rf"workdir {work}: holds files posedual_tf did not write \(best, "
                                                 r"config\.yaml, metrics\.json\)"):
        training.run(tiny_demo_cfg(tmp_path))
    assert snapshot(work) == mine
    # through the command line: one line, rc 1
    proc = run_python(["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={work}"], timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(f"error: workdir {work}: holds files")
    assert snapshot(work) == mine


def test_case07_quick_study_never_replaces_the_published_page(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import collapse_study

    out = tmp_path / "docs"
    out.mkdir()
    for suffix in (".json", ".md", ".png"):
        shutil.copy(REPO / "docs" / f"collapse_study{suffix}", out / f"collapse_study{suffix}")
    before = snapshot(out)
    with pytest.raises(SystemExit, match=r"holds a study made with other settings \(.*epochs.*\)"):
        collapse_study.main(["--quick", "--workdir", str(tmp_path / "study"), "--out", str(out)])
    assert snapshot(out) == before and not (tmp_path / "study").exists()


def test_case08_coco_file_names_are_read_only_inside_images(shared, tmp_path):
    from posedual_tf.conversion import coco

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(shared / "coco" / COCO_NAMES[0], outside / "x.jpg")
    ann = coco_copy(shared, tmp_path / "images", {COCO_NAMES[0]: "../outside/x.jpg",
                                                   COCO_NAMES[1]: str(outside / "x.jpg")})
    manifest = coco.convert(str(ann), str(tmp_path / "images"), str(tmp_path / "rec" / "val"), workers=1)
    assert manifest["num_images"] == 2
    reasons = {s["image"]: s["reason"] for s in manifest["skipped"] if "image" in s}
    assert set(reasons) == {"../outside/x.jpg", str(outside / "x.jpg")}
    assert all("leaves the images folder" in r for r in reasons.values())


# case 15 (a second writer of a folder refused; training takes its workdir's lock): tests/test_one_writer.py
