"""One writer per output (issue #41, rule 2): every command that writes a folder holds the folder's lock
from its first write; a second writer is refused at once, in one line naming the holder's pid and
command, and writes nothing; a lock left by a killed holder is taken over, with a line saying so.

The other writer is a real second process (``hold``): the operating system's lock is per process, and a
command that calls another (train's data preparation runs the converters) enters its own lock again.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from posedual_tf import files
from tests.conftest import REPO, TINY, run_python, snapshot

HOLDER = """
import sys
from posedual_tf import files
folder, tool, what = sys.argv[1:4]
with files.writing(folder, tool, ("evaluate",) if tool == "train" else (), what=what) if tool else \\
        files.lock(folder, what, beside=True):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def hold(folder, what: str, tool: str = ""):
    """Another process holds ``folder``'s lock as ``what`` (claimed for ``tool``; no tool: a lock beside
    the folder, as export's); yields its pid. It releases when the block ends."""
    if not tool:
        pathlib.Path(folder).parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), tool, what], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert p.stdout.readline().strip() == "held"
        yield p.pid
    finally:
        p.stdin.close()
        assert p.wait(timeout=30) == 0


def refused(pid: int, what: str) -> str:
    """The refusal's words, as a regular expression."""
    return rf"{what} \(pid {pid}\) is writing there; nothing was written"


def test_a_second_process_is_refused_the_same_process_enters_again_and_a_release_frees(tmp_path):
    with hold(tmp_path, "predict", "predict") as pid:
        with pytest.raises(files.NotOursError, match=rf"^{tmp_path}: " + refused(pid, "predict")):
            with files.lock(str(tmp_path), "evaluate"):
                pass
        assert (tmp_path / files.LOCK_FILE).read_text() == f"{pid} predict"
    assert (tmp_path / files.LOCK_FILE).read_text() == ""            # released: nothing to take over
    with files.lock(str(tmp_path), "evaluate"):
        with files.lock(str(tmp_path / "."), "train"):                 # this process again: it passes
            assert (tmp_path / files.LOCK_FILE).read_text() == f"{os.getpid()} evaluate"
        with hold(tmp_path / "other", "x", "predict"):                 # another folder is another lock
            pass
        assert (tmp_path / files.LOCK_FILE).read_text() == f"{os.getpid()} evaluate"     # still held


def test_a_lock_left_by_a_killed_holder_is_taken_over_saying_so(tmp_path, capsys):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "predict", "predict"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.stdout.readline().strip() == "held"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    with files.lock(str(tmp_path), "predict"):
        assert (tmp_path / files.LOCK_FILE).read_text() == f"{os.getpid()} predict"
    err = capsys.readouterr().err
    assert err == f"{tmp_path}: taking over the lock of predict (pid {p.pid}), which ended without releasing it\n"
    with files.lock(str(tmp_path), "predict"):                         # released properly: no line
        pass
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------ every writer
def _writers(shared, coco_records, tiny_export, tmp):
    """(command, folder it writes, how another one holds it, the call) for every writer of a folder."""
    from posedual_tf import checkpoints, config, demo, export, predict, tflite, training
    from posedual_tf.conversion import coco, detections
    from posedual_tf.evaluation import runner

    cfg, weights_dir, saved = tiny_export
    image = str(shared / "coco" / sorted(p.name for p in (shared / "coco").glob("*.jpg"))[0])
    demo_cfg_sets = [f"workdir={tmp / 'demo'}", "data.synthetic.labelled_images=4", "data.synthetic.val_images=2",
                     "data.synthetic.unlabelled_images=2", "data.image_size=[64,96]", "data.heatmap_size=[16,24]",
                     "model.width_multiplier=0.125"]
    demo_cfg = config.load("demo_sup", demo_cfg_sets)
    ready_cfg = config.load("demo_sup", [f"workdir={tmp / 'ready'}", *demo_cfg_sets[1:]])
    demo.prepare_data(ready_cfg)
    val_cfg = config.load("coco1k_dual", TINY + [f"data.val.records={coco_records}", "test.max_batches=1"])
    return [
        ("predict", tmp / "pred", "predict",
         lambda: predict.run(saved, [image], str(tmp / "pred"), None, progress=False, whole_image=True)),
        ("evaluate", tmp / "eval", "evaluate",
         lambda: runner.evaluate(val_cfg, checkpoints.load_networks(val_cfg, weights_dir)[0],
                                 workdir=str(tmp / "eval"), progress=False)),
        ("export", tmp / "model" / "1", "", lambda: export.export(cfg, weights_dir, str(tmp / "model" / "1"))),
        ("export", tmp / "served", "export", lambda: export.export(cfg, weights_dir, str(tmp / "served"), version=2)),
        ("export", tmp / "lite", "export", lambda: tflite.export_tflite(cfg, weights_dir, str(tmp / "lite"), "1",
                                                                        "float32", None, 0, "shift")),
        ("convert", tmp / "rec" / "val.parts", "convert",
         lambda: coco.convert(str(shared / "coco/test_coco.json"), str(shared / "coco"), str(tmp / "rec" / "val"),
                              workers=1)),
        ("convert", tmp / "rec" / "det.parts", "convert",
         lambda: detections.convert(str(shared / "coco/image_info_test_coco.json"),
                                    str(shared / "coco/test_coco_det_AP_H_56.json"), str(shared / "coco"),
                                    str(tmp / "rec" / "det"), workers=1)),
        ("train", tmp / "demo", "train", lambda: demo.prepare_data(demo_cfg)),                  # data preparation
        ("train", tmp / "ready", "train", lambda: training.run(ready_cfg, progress="none")),   # its data ready
    ]


def test_every_writer_is_refused_at_once_while_another_writes_its_folder(shared, coco_records, tiny_export, tmp_path):
    from posedual_tf import predict
    from posedual_tf.conversion.writer import ConversionError
    from posedual_tf.export import ExportError

    cases = _writers(shared, coco_records, tiny_export, tmp_path)
    assert {c[0] for c in cases} == {"predict", "evaluate", "export", "convert", "train"}
    for command, folder, tool, call in cases:
        watched = folder if tool else folder.parent         # export's lock lies beside its SavedModel
        with hold(folder, command, tool) as pid:
            before = snapshot(watched)
            with pytest.raises((files.NotOursError, ConversionError, ExportError, predict.PredictError)) as e:
                call()
            message = str(e.value)
            assert message.splitlines() == [message] and re.search(refused(pid, command), message), \
                (command, folder, message)
            assert snapshot(watched) == before, (command, folder)


def test_inspect_draw_and_the_train_command_are_refused_in_one_line(shared, coco_records, tmp_path):
    """The command lines: inspect --draw, and train from before its data preparation (a fresh demo workdir
    that another train holds: nothing generated, converted or trained)."""
    draw, work = tmp_path / "look", tmp_path / "run"
    for command, folder, tool, args in [
            ("inspect --draw", draw, "inspect", ["-m", "tfrecords_tools.inspect", coco_records, f"--draw={draw}"]),
            ("train", work, "train", ["-m", "posedual_tf.train", "--config", "demo_sup", f"--set=workdir={work}"])]:
        with hold(folder, command, tool) as pid:
            done = run_python(args, cwd=str(REPO))
            assert done.returncode != 0
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and re.search(refused(pid, command), lines[0]), done.stderr
            assert sorted(os.listdir(folder)) == [files.OWNERSHIP_FILE, files.LOCK_FILE], command
