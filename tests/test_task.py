"""#25: the task object: every record source of a run is opened once per role, and the codec it shares."""
from __future__ import annotations

import collections

import pytest

from posedual_tf import codec, config, demo, training
from posedual_tf.data import record_index, records
from posedual_tf.task import PoseTask
from tests.conftest import SMALL_DEMO, need_bfloat16


def _small_dual(tmp_path, *extra):
    sets = [s.removeprefix("--set=") for s in SMALL_DEMO]
    return config.load("demo_dual", [f"workdir={tmp_path / 'run'}", *sets, "train.epochs=1", "train.val_interval=1",
                                     *extra])


def test_one_training_run_with_validation_opens_each_source_once_per_role(tmp_path, monkeypatch):
    """A PoseDual demo run (labelled + unlabelled training, pair images, validation on val and on the
    unlabelled people's ground truth): each source's manifest is read and its shards scanned once. The
    run's bfloat16 policy is gone when it returns."""
    import keras

    need_bfloat16()
    cfg = _small_dual(tmp_path, "train.mixed_precision=mixed_bfloat16")
    demo.prepare_data(cfg)
    reads, scans = collections.Counter(), collections.Counter()
    read_manifest, load = records.read_manifest, record_index.load

    def counted_read(prefix):
        reads[prefix] += 1
        return read_manifest(prefix)

    def counted_load(prefix, manifest=None):
        scans[prefix] += 1
        return load(prefix, manifest)

    monkeypatch.setattr(records, "read_manifest", counted_read)
    monkeypatch.setattr(record_index, "load", counted_load)
    result = training.run(cfg, progress="none")
    assert result["validation"] and result["unlabelled_metrics"]        # validated on both sets
    assert keras.mixed_precision.global_policy().name == "float32"     # the run's policy ended with it
    d = cfg.data
    roles = [d.labelled.records, d.unlabelled.records, d.val.records, d.unlabelled_eval.records]
    assert len(set(roles)) == 4
    assert reads == {prefix: 1 for prefix in roles}
    assert scans == {prefix: 1 for prefix in roles}


def test_the_task_shares_one_codec_with_its_pipeline_and_validation(tmp_path):
    """The codec is built once from the config: the targets the training step encodes are those of the
    task's codec (a sigma changed on the codec alone changes them), and the stride the hard views use is its."""
    cfg = _small_dual(tmp_path)
    demo.prepare_data(cfg)
    task = PoseTask(cfg)
    assert task.heatmaps == codec.HeatmapCodec.from_config(cfg)
    assert task.heatmaps.stride == (4.0, 4.0)
    labelled = next(iter(task.build_inputs()))[0]
    built = task.build_model(steps_per_epoch=3)
    assert built.method.views.stride == task.heatmaps.stride[0]
    first = built.method.prepare(labelled)["target"].numpy()        # the targets the step encodes
    import dataclasses

    task.heatmaps = dataclasses.replace(task.heatmaps, sigma=1.0)
    sharper = task.build_model(steps_per_epoch=3).method.prepare(labelled)["target"].numpy()
    assert first.shape == sharper.shape and (first > 0).sum() > (sharper > 0).sum()


def test_a_task_check_names_what_is_missing(tmp_path):
    cfg = _small_dual(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^data\.labelled\.records: no TFRecords at .*posedual_tf\.demo"):
        PoseTask(cfg).check()


PREFETCH = """
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, ".")
from posedual_tf import config, demo
from posedual_tf.task import PoseTask
from tests.conftest import SMALL_DEMO, need_bfloat16
cfg = config.load("demo_dual", [f"workdir={sys.argv[1]}", *[s.removeprefix("--set=") for s in SMALL_DEMO]])
demo.prepare_data(cfg)
task = PoseTask(cfg)
host = next(iter(task.build_inputs()))
ds = task.build_inputs(device="/cpu:1")
first = next(iter(ds))
equal = all(np.array_equal(a, b) for a, b in zip(tf.nest.flatten(host), tf.nest.flatten(first)))
devices = sorted({t.device.rsplit("/", 1)[-1] for t in tf.nest.flatten(first)})
built = task.build_model(steps_per_epoch=2)
history = built.method.fit(ds, epochs=1, steps_per_epoch=2, verbose=0).history
print(json.dumps({"equal": equal, "devices": devices, "loss": history["loss"]}))
"""


def test_one_replica_batches_wait_on_the_device(tmp_path):
    """The single-replica stream is prefetched to the device (a second logical CPU stands in for the GPU):
    the batches arrive there, equal to the host's, and Keras trains on them."""
    import json

    from tests.conftest import run_python

    out = run_python(["-c", PREFETCH, str(tmp_path / "run")], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["equal"] and got["devices"] == ["device:CPU:1"] and len(got["loss"]) == 1, got
