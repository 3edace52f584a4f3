"""Resuming a workdir and reading checkpoints (cases 14, 16, 17 and 20 of the second bad-input probe):
every changed setting is stated, the ones that change the run are refused, a damaged or foreign
checkpoint is one line, nothing is overwritten."""
from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from posedual_tf import config, files
from tests.conftest import run_python, tiny_demo_cfg


def _tiny_checkpoint(tmp_path):
    import tensorflow as tf
    from posedual_tf import checkpoints
    from posedual_tf.models import builder

    cfg = tiny_demo_cfg(tmp_path)
    nets = builder.build_networks(cfg)
    ckpt = checkpoints.training_checkpoint(nets)
    prefix = ckpt.write(str(tmp_path / "ckpt" / "ckpt-1"))
    return cfg, nets, prefix, tf


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


def test_case16_garbage_checkpoint_state_is_refused_not_overwritten(tmp_path):
    from posedual_tf import resume, training

    cfg = tiny_demo_cfg(tmp_path)
    state = tmp_path / "run" / "ckpt" / "checkpoint"
    files.claim(str(tmp_path / "run"), "train")
    files.own(str(tmp_path / "run"), "ckpt")
    state.parent.mkdir()
    for text in ("garbage {{ not a proto", 'model_checkpoint_path: "ckpt-7"\n'):       # also: deleted ckpt-N
        state.write_text(text)
        with pytest.raises(resume.ResumeMismatchError, match=r"ckpt/checkpoint: does not name a checkpoint that exists"):
            training.run(cfg)
        assert state.read_text() == text


def test_case17_resume_states_changed_settings_refuses_meaning_changes_and_follows_a_moved_workdir(tmp_path):
    from posedual_tf import resume
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
    assert resume.check_resume(again) == [f"train.lr: {cfg.train.lr!r} -> 0.5"]       # data paths moved with it
    for setting in ("train.batch_size=3", "train.steps_per_epoch=7", "method.sup_weight=0.25"):
        with pytest.raises(resume.ResumeMismatchError, match=rf"holds a run trained with {setting.split('=')[0]}="):
            resume.check_resume(config.load("demo_sup", [f"workdir={moved}", setting]))


def test_error_unfinished_checkpoint_saves_are_removed_only_in_our_ckpt(tmp_path):
    from posedual_tf import resume

    work = tmp_path / "run"
    files.claim(str(work), "train")
    (work / "ckpt" / "ckpt-4_temp").mkdir(parents=True)
    assert resume.remove_unfinished_saves(str(work)) == []                 # ckpt/ not on the list: untouched
    assert (work / "ckpt" / "ckpt-4_temp").exists()
    shutil.rmtree(work / "ckpt")
    files.own(str(work), "ckpt")
    (work / "ckpt" / "ckpt-4_temp").mkdir(parents=True)
    (work / "ckpt" / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    assert resume.remove_unfinished_saves(str(work)) == [str(work / "ckpt" / "ckpt-4_temp")]
    assert not (work / "ckpt" / "ckpt-4_temp").exists()


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
