"""The embedded default: synthetic people (drawn where annotated, visibility from occlusion) and the demo."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from posedual_tf.data import records
from posedual_tf.conversion import coco, synthetic


def test_synthetic_keypoints_land_on_drawn_limbs(tmp_path):
    data = synthetic.generate(str(tmp_path), 30, seed=3, split="train")
    checked = occluded = differs = outside = 0
    by_image = {im["id"]: im for im in data["images"]}
    for a in data["annotations"]:
        img = cv2.imread(str(tmp_path / "train" / by_image[a["image_id"]]["file_name"])).astype(int)
        kp = np.array(a["keypoints"]).reshape(17, 3)
        for j, (x, y, v) in enumerate(kp):
            if v == 2:  # visible: the pixel under the joint has the figure's colour for that joint
                colour = np.array(a["joint_colours"][j])
                px = img[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))]
                assert np.abs(px - colour).max() < 60, (a["id"], j, px, colour)
                checked += 1
            elif v == 1:
                occluded += 1  # something else is on top: mostly another colour (or a same-coloured part)
                px = img[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))]
                differs += np.abs(px - np.array(a["joint_colours"][j])).max() > 30
            else:
                outside += 1
                assert x == 0 and y == 0
    assert checked > 200 and occluded > 5 and differs > occluded / 2
    # the occlusion flags follow what was drawn: a figure drawn later covers earlier ones
    assert data["annotations"] and all(a["num_keypoints"] == sum(np.array(a["keypoints"])[2::3] > 0)
                                       for a in data["annotations"])


def test_synthetic_converts_through_coco_tool(tmp_path):
    synthetic.generate(str(tmp_path), 5, seed=4, split="val")
    m = coco.convert(str(tmp_path / "val.json"), str(tmp_path / "val"), str(tmp_path / "rec"), workers=1)
    ann = json.loads((tmp_path / "val.json").read_text())
    assert m["num_instances"] == len(ann["annotations"]) and m["num_skipped"] == 0
    recs = records.read_all(str(tmp_path / "rec"))
    assert recs[0]["image/encoded"] == (tmp_path / "val" / ann["images"][0]["file_name"]).read_bytes()


def test_demo_command_end_to_end_reduced(tmp_path):
    """The demo as a user runs it in an 80-column terminal, from a fresh folder: every line fits, no
    TensorFlow/absl/Keras warning, everything under runs/."""
    from tests.conftest import FOREIGN_WARNING, run_in_pty

    workdir = tmp_path / "runs" / "demo_dual"
    args = [sys.executable, "-m", "posedual_tf.train", "--config", "demo_dual", "--set=train.epochs=2",
            "--set=train.steps_per_epoch=30", "--set=data.synthetic.unlabelled_images=60",
            "--set=data.synthetic.labelled_images=60", "--set=train.val_interval=2"]
    status, lines = run_in_pty(args, cwd=tmp_path)
    out = "\n".join(lines)
    assert status == 0, out[-3000:]
    assert [line for line in lines if len(line) > 80] == []
    assert [line for line in lines if re.search(FOREIGN_WARNING, line, re.I)] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    proc = subprocess.CompletedProcess(args, status, out, out)
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["net1"]["AP"] > 0 and metrics["ensemble"]["AP"] > 0
    # the unlabelled people are scored with their ground truth beside val, with the collapse statistics
    unl = json.loads((workdir / "metrics_unlabelled.json").read_text())
    gt = json.loads((workdir / "data/synthetic/unlabelled.json").read_text())
    assert unl["_counts"]["instances"] == len(gt["annotations"]) > 0
    # the peak statistics are those of the written results' joint scores (rounded there to 3 decimals)
    written = json.loads((workdir / "results_net1_unlabelled.json").read_text())
    if len(written) == unl["_counts"]["instances"]:                      # NMS removed no one
        peaks = np.array([r["keypoints"][2::3] for r in written])
        assert unl["net1"]["peak_mean"] == pytest.approx(peaks.mean(), abs=1e-3)
        near = np.mean(np.abs(peaks - 0.1) < 1e-3)
        assert abs(unl["net1"]["peaks_below"] - np.mean(peaks < 0.1)) <= near
    assert unl["net1"]["peak_mean"] > 0
    result = json.loads((workdir / "train_result.json").read_text())
    assert result["validation"][-1]["unl_net1"] == unl["net1"]["AP"]
    assert len(result["history"]["low_peaks_1"]) == 2 and "epoch 2 unlabelled: net1 " in proc.stdout
    assert "\nnet1 " in proc.stdout and "SavedModel:" in proc.stdout
    assert (workdir / "saved_model" / "saved_model.pb").exists()
    assert list((workdir / "tb" / "demo_dual").glob("events.out.tfevents.*"))       # the run: the config's name
    tail = [line for line in proc.stdout.strip().splitlines() if line.strip()][-2:]
    assert tail[0].startswith(f"done: {2 * 30} steps, ") and tail[1] == "  runs/demo_dual/train_result.json"
    # the exported network is the better one of the last validation (train_result.json records which), and
    # the lines say so
    val = json.loads((workdir / "metrics.json").read_text())
    best = "1" if val["net1"]["AP"] >= val["net2"]["AP"] else "2"
    assert result["best_network"]["net"] == best
    assert (f"SavedModel: runs/demo_dual/saved_model\n  net {best}: the better network at the last validation "
            "(net1 ") in proc.stdout
    assert json.loads((workdir / "saved_model" / "posedual_export.json").read_text())["net"] == best
    assert "shuffle=True" not in proc.stderr
    # the same command again: a finished run says so, trains nothing, and still reports and exports
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "runs/demo_dual holds a finished run (60 steps: 2 epochs of 30); nothing to train" in again.stdout
    assert "resumed from" not in again.stdout and "\nnet1 " in again.stdout
