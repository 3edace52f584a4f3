"""#43, ``data.crops_on=device``: the input pipeline ships the decoded part of each image (uint8) and the
training step warps it. The crops, joints and targets equal the host path's on the real COCO samples
(labelled people with flips, rotations and half-body crops; unlabelled easy views), the windows come in
128-pixel steps, the warp compiles under XLA (the CPU stand-in for a GPU) and equals itself without
it, a training run on device crops is the host run (on one device and on two replicas), and the config
refuses the dataset copies that need a crop on the host."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import codec, config, demo, training
from posedual_tf.data import pipeline
from posedual_tf.data.settings import TrainDataSettings
from tests.conftest import run_python

BATCHES = 4


def _batches(coco_records, det_records, crops_on: str, *extra):
    cfg = config.load("coco1k_dual", [f"data.labelled.records={coco_records}", f"data.unlabelled.records={det_records}",
                                      f"data.val.records={coco_records}", "train.batch_size=6",
                                      "data.prob_half_body=0.5", "data.num_joints_half_body=3",
                                      f"data.crops_on={crops_on}", *extra])
    ds = pipeline.train_dataset(TrainDataSettings.from_config(cfg))
    return cfg, [tf.nest.map_structure(np.asarray, b) for b in ds.take(BATCHES)]


def test_device_crops_equal_the_host_crops_joints_and_targets(coco_records, det_records):
    cfg, host = _batches(coco_records, det_records, "host")
    _, device = _batches(coco_records, det_records, "device")
    prepare = codec.TrainingInputs.from_config(cfg)
    rotated = flipped = 0
    for h_pair, d_pair in zip(host, device):
        for h, d in zip(h_pair, d_pair):
            np.testing.assert_array_equal(h["person"], d["person"])
            assert "image" not in d and d["window"].dtype == np.uint8
            assert d["window"].shape[1] % pipeline.WINDOW_BUCKET == 0 and d["window"].shape[2] % pipeline.WINDOW_BUCKET == 0
            got, want = prepare(d), prepare(h)
            crops = codec.crops_from_windows(d["window"], d["inverse"], cfg.data.image_size,
                                             codec.InputNormaliser.from_config(cfg.data)).numpy().astype(int)
            diff = np.abs(crops - h["image"].astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
            np.testing.assert_allclose(got["image"], want["image"], atol=1.0 / 255 / 0.224 + 1e-6)
            if "joints" in h:
                np.testing.assert_array_equal(d["joints"], h["joints"])
                np.testing.assert_array_equal(got["target"], want["target"])
                np.testing.assert_array_equal(got["weight"], want["weight"])
            a = d["inverse"][:, :, :2]
            rotated += int(np.sum(np.abs(a[:, 0, 1]) > 1e-4))
            flipped += int(np.sum(a[:, 0, 0] < 0))
    assert rotated > 0 and flipped > 0          # the draws exercised rotation and the folded flip


def test_device_warp_compiles_under_xla_and_equals_itself(coco_records, det_records):
    cfg, device = _batches(coco_records, det_records, "device")
    inputs = codec.InputNormaliser.from_config(cfg.data)
    lab = device[0][0]

    def warp(w, m):
        return codec.crops_from_windows(w, m, cfg.data.image_size, inputs)

    eager = warp(lab["window"], lab["inverse"]).numpy()
    compiled = tf.function(warp, jit_compile=True)(lab["window"], lab["inverse"]).numpy()
    diff = np.abs(eager.astype(int) - compiled.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert eager.shape == (6, cfg.data.image_size[1], cfg.data.image_size[0], 3)


def test_a_run_on_device_crops_trains_as_the_host_run(tmp_path):
    """demo_dual, 2 steps: the same losses as on host crops (the crops are the same)."""
    sets = ["train.batch_size=4", "train.steps_per_epoch=2", "train.epochs=1", "train.val_interval=10",
            "data.synthetic.labelled_images=8", "data.synthetic.unlabelled_images=8", "data.synthetic.val_images=2",
            "train.jit_compile=false"]
    runs = {}
    for where in ("host", "device"):
        cfg = config.load("demo_dual", [f"workdir={tmp_path / where}", "data.image_size=[64,96]",
                                        "data.heatmap_size=[16,24]", "model.width_multiplier=0.125", *sets,
                                        f"data.crops_on={where}"])
        demo.prepare_data(cfg)
        runs[where] = training.run(cfg, progress="none")
    assert runs["device"]["final_step"] == runs["host"]["final_step"] == 2
    losses = {w: r["history"]["loss"] for w, r in runs.items()}
    np.testing.assert_allclose(losses["device"], losses["host"], rtol=1e-3)


MIRRORED_RUNS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, ".")
    from posedual_tf import config, demo, training
    out = {}
    for where in ("host", "device"):
        cfg = config.load("demo_dual", [f"workdir={sys.argv[1]}/{where}", "data.image_size=[64,96]",
                                        "data.heatmap_size=[16,24]", "model.width_multiplier=0.125",
                                        "train.batch_size=4", "train.steps_per_epoch=2", "train.epochs=1",
                                        "train.val_interval=10", "data.synthetic.labelled_images=8",
                                        "data.synthetic.unlabelled_images=8", "data.synthetic.val_images=2",
                                        "train.strategy=mirrored", f"data.crops_on={where}"])
        demo.prepare_data(cfg)
        r = training.run(cfg, progress="none")
        out[where] = {"replicas": r["num_replicas"], "loss": r["history"]["loss"]}
    print(json.dumps(out))
""")


def test_two_replicas_train_on_device_crops_as_on_host_crops(tmp_path):
    """MirroredStrategy on 2 logical CPUs: Keras builds a model under a strategy by calling it on the first
    raw batch, which has no ``image`` with device crops; the run trains, as the host-crop run does."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = run_python(["-c", MIRRORED_RUNS, str(tmp_path)], timeout=900, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["host"]["replicas"] == runs["device"]["replicas"] == 2
    np.testing.assert_allclose(runs["device"]["loss"], runs["host"]["loss"], rtol=1e-3)


@pytest.mark.parametrize("extra", [["method.rand_aug=true"], ["method.paths=[RA+JC]"], ["method.paths=[YOCOTA]"]])
def test_crops_on_device_refuses_copies_made_from_a_host_crop(extra):
    with pytest.raises(config.ConfigError, match=r"data\.crops_on: expected host when a hard path starts from "
                                                 r"a RandAugment or TrivialAugment copy"):
        config.load("coco1k_dual", ["data.crops_on=device", *extra])
    config.load("coco1k_dual", ["data.crops_on=device", "method.paths=[JC]"])      # device-side views are fine
