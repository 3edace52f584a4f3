"""Command lines explain themselves: --help lists the main flags, one flag spelling (the other accepted),
TensorFlow's start-up lines only with --verbose."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from posedual_tf import cli

HELP = {
    "posedual_tf.train": ["--config", "--set", "--progress", "--debug", "--verbose"],
    "posedual_tf.evaluate": ["--config", "--set", "--checkpoint", "--output"],
    "posedual_tf.export": ["--config", "--checkpoint", "--output", "--net", "--flip-test", "--overwrite"],
    "posedual_tf.predict": ["--saved-model", "--images", "--image", "--boxes", "--whole-image", "--output"],
    "posedual_tf.convert_torch": ["--config", "--checkpoint", "--output", "--allow-missing"],
    "posedual_tf.data_service": ["--port", "--dispatcher", "--worker-address"],
    "tfrecords_tools.coco": ["--annotations", "--images", "--output", "--max-instances", "--keypoint-map"],
    "tfrecords_tools.detections": ["--image-info", "--detections", "--images", "--output"],
    "tfrecords_tools.aic": ["--annotations", "--images", "--output", "--num-shards"],
    "tfrecords_tools.mpii": ["--annotations", "--images", "--output", "--workers"],
    "tfrecords_tools.inspect": ["--draw", "--limit", "--verify"],
    "posedual_tf.reproduce": ["--table", "--gpus", "--hosts", "--dry-run", "--only", "--runs", "--output", "--set"],
}


@pytest.mark.parametrize("module", sorted(HELP))
def test_help_lists_the_main_flags(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for flag in HELP[module]:                 # absl shows booleans as --[no]name
        assert flag in out.stdout or flag.replace("--", "--[no]") in out.stdout, (module, flag)
    if module.startswith("posedual_tf"):
        assert "default:" in out.stdout


def test_both_spellings_and_quiet_start_up(shared, tmp_path):
    assert cli.normalise_flag_spelling(["x", "--num_shards=2", "--set=a_b.c_d=1", "--only_check_args"],
                                       lambda n: n in ("num-shards", "set")) == \
        ["x", "--num-shards=2", "--set=a_b.c_d=1", "--only_check_args"]
    args = [sys.executable, "-m", "tfrecords_tools.coco", "--annotations", str(shared / "coco/test_coco.json"),
            "--images", str(shared / "coco"), "--num_shards", "2", "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}     # as a user's shell has it
    out = subprocess.run(args + ["--output", str(tmp_path / "a")], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 shards" in out.stdout
    start_up = ("oneDNN", "cpu_feature_guard", "InitializeLog")        # which of them shows depends on the CPU
    assert not any(line in out.stderr for line in start_up), out.stderr
    loud = subprocess.run(args + ["--output", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert loud.returncode == 0 and any(line in loud.stderr for line in start_up), loud.stderr


def test_xla_error_keeps_its_first_cause_line():
    """An XLA failure inside Keras' fit says 'Graph execution error:' then the node's stack; the one-line
    error carries the cause (the op XLA cannot compile), not the framing."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def warp(x):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=tf.constant([[1.0, 0, 0, 0, 1, 0, 0, 0]]), output_shape=tf.constant([8, 8]),
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")

    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        warp(tf.zeros([1, 8, 8, 1]))
    framed = tf.errors.InvalidArgumentError(None, None, "Graph execution error:\n\nDetected at node x defined at "
                                            "(most recent call last):\n  File \"a.py\", line 1, in <module>\n\n"
                                            + str(err.value))
    for e in (err.value, framed):
        line = cli.one_line(e)
        assert "\n" not in line and "ImageProjectiveTransformV3" in line and "XLA" in line, line
        assert line.startswith("InvalidArgumentError: Detected unsupported operations")


def test_xla_with_determinism_is_an_error_or_said():
    """Keras runs no XLA under op determinism: forcing both is a one-line error, never a silent drop."""
    import tensorflow as tf

    from posedual_tf.distribution import resolve_jit

    one = tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="train.jit_compile=true with train.deterministic=true"):
        resolve_jit("true", one, deterministic=True)
    assert resolve_jit("true", one) is True and resolve_jit("false", one, deterministic=True) is False


def test_tflite_export_prints_no_tensorflow_warning_unless_verbose(tmp_path):
    """#42 in part: TFLite's converter warns through absl (``W... lite.py:...] Please consider providing the
    trackable_obj argument``); the command's default output has no such line, --verbose has it."""
    import re

    from posedual_tf import checkpoints, config
    from posedual_tf.models import builder
    from tests.conftest import EXPORT_SETS

    cfg = config.load("coco1k_dual", EXPORT_SETS)
    checkpoints.save_nets(builder.build_networks(cfg, policy="float32"), str(tmp_path / "w"))
    args = [sys.executable, "-m", "posedual_tf.export", "--config", "coco1k_dual",
            *[f"--set={s}" for s in EXPORT_SETS], "--checkpoint", str(tmp_path / "w"), "--format", "tflite"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}     # as a user's shell has it
    logged = re.compile(r"^[IWEF]\d{4} ", re.M)
    quiet = subprocess.run(args + ["--output", str(tmp_path / "a")], capture_output=True, text=True, timeout=600,
                           env=env)
    assert quiet.returncode == 0 and "TFLite (float32): " in quiet.stdout, quiet.stderr[-2000:]
    assert not logged.search(quiet.stdout + quiet.stderr), quiet.stderr
    loud = subprocess.run(args + ["--output", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert loud.returncode == 0 and "lite.py" in loud.stderr, loud.stderr[-2000:]


def test_every_command_fits_80_columns_and_shows_no_foreign_warning(tiny_export, shared, tmp_path):
    """#42 (6): the commands a user runs after training, each in an 80-column terminal from the folder it
    writes under: no line over 80 columns (paths shown relative to it, summaries wrapped) and no
    TensorFlow, absl or Keras warning line."""
    import re

    from tests.conftest import FOREIGN_WARNING, TINY_SETS, run_in_pty

    import shutil

    cfg, trained, _ = tiny_export
    weights = "runs/weights"                         # where a user's weights live
    shutil.copytree(trained, tmp_path / weights)
    model = ["--config", "coco1k_dual", *TINY_SETS]
    commands = [
        ["tfrecords_tools.coco", "--annotations", str(shared / "coco/test_coco.json"), "--images",
         str(shared / "coco"), "--output", "runs/records/val"],
        ["tfrecords_tools.inspect", "runs/records/val"],
        ["posedual_tf.evaluate", *model, "--set=data.val.records=runs/records/val",
         f"--set=data.val.annotations={shared / 'coco/test_coco.json'}", "--checkpoint", weights,
         "--output", "runs/eval"],
        ["posedual_tf.export", *model, "--checkpoint", weights, "--output", "runs/saved"],
        ["posedual_tf.export", *model, "--checkpoint", weights, "--output", "runs/lite", "--format", "tflite"],
        ["posedual_tf.predict", "--saved-model", "runs/saved", "--sample", "--output", "runs/predict"],
        ["posedual_tf.predict", "--saved-model", "runs/saved", "--image", str(shared / "coco/000000000785.jpg"),
         "--output", "runs/predict_hog"],
        ["posedual_tf.rest_request", "--sample", "--output", "runs/request.json"],
        ["posedual_tf.config", "--config", "coco1k_dual"],
        ["posedual_tf.reproduce", "--table", "coco_wild", "--dry-run"],
    ]
    foreign = re.compile(FOREIGN_WARNING, re.I)
    for command in commands:
        status, lines = run_in_pty([sys.executable, "-m", *command], cwd=tmp_path, timeout=600)
        assert status == 0, (command, lines[-20:])
        wide = [line for line in lines if len(line) > 80]
        assert not wide, (command[0], wide)
        assert not [line for line in lines if foreign.search(line)], (command[0], lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
