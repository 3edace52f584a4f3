"""Command lines explain themselves: --help lists the main flags, one flag spelling (the other accepted),
TensorFlow's start-up lines only with --verbose."""
from __future__ import annotations

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
    "tfrecords_tools.coco": ["--annotations", "--images", "--output", "--max-instances", "--keypoint-map"],
    "tfrecords_tools.detections": ["--image-info", "--detections", "--images", "--output"],
    "tfrecords_tools.aic": ["--annotations", "--images", "--output", "--num-shards"],
    "tfrecords_tools.mpii": ["--annotations", "--images", "--output", "--workers"],
    "tfrecords_tools.inspect": ["--draw", "--limit", "--verify"],
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
    out = subprocess.run(args + ["--output", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 shards" in out.stdout
    assert "oneDNN" not in out.stderr and "InitializeLog" not in out.stderr
    loud = subprocess.run(args + ["--output", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True,
                          timeout=300)
    assert loud.returncode == 0 and "oneDNN" in loud.stderr
