"""#28: training input made by tf.data service workers (a dispatcher and 2 workers on 127.0.0.1) is the
local pipeline's input: the same people, crops and targets for the same seed and start step, and the
same 3 training steps."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import config, demo, training
from posedual_tf.data import pipeline
from posedual_tf.task import PoseTask
from tests.conftest import SMALL_DEMO


@pytest.fixture
def service():
    """``HOST:PORT`` of a dispatcher with 2 workers, all on 127.0.0.1."""
    svc = tf.data.experimental.service
    dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
    address = "127.0.0.1:" + dispatcher.target.rsplit(":", 1)[1]
    workers = [svc.WorkerServer(svc.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%"))
               for _ in range(2)]
    yield address
    for server in (*workers, dispatcher):
        server.stop()


def _cfg(tmp_path, name, *extra):
    sets = [s.removeprefix("--set=") for s in SMALL_DEMO]
    return config.load("demo_dual", [f"workdir={tmp_path / name}", *sets, "train.epochs=1",
                                     *extra])


def _arrays(batch):
    return tf.nest.map_structure(np.asarray, batch)


@pytest.mark.parametrize("crops_on", ["host", "device"])
def test_data_service_batches_and_training_equal_the_local_pipeline(tmp_path, service, crops_on):
    """With ``data.crops_on=device`` the workers ship the decoded windows (#43): the same as locally."""
    local_cfg = _cfg(tmp_path, "local", f"data.crops_on={crops_on}")
    demo.prepare_data(local_cfg)
    served_cfg = dataclasses.replace(local_cfg, workdir=str(tmp_path / "served"),     # the same records
                                     train=dataclasses.replace(local_cfg.train, data_service=service))
    start = 2                                   # mid-epoch (3 steps per epoch): a resumed run's position
    local = [_arrays(b) for b in PoseTask(local_cfg).build_inputs(start_step=start).take(4)]
    served = [_arrays(b) for b in PoseTask(served_cfg).build_inputs(start_step=start).take(4)]
    assert len(served) == len(local) == 4
    for want, got in zip(local, served):
        tf.nest.assert_same_structure(want, got)
        for x, y in zip(tf.nest.flatten(want), tf.nest.flatten(got)):
            np.testing.assert_array_equal(x, y)          # people, crops (easy and hard copies), targets
    people = [tuple(b[1]["person"]) for b in local]     # 4 steps across an epoch end: 4 different groups
    assert len(set(people)) == 4
    assert ("window" in local[0][1]) == (crops_on == "device")
    if crops_on == "device":
        return                                          # training on device crops: tests/test_device_crops.py

    ran = training.run(local_cfg, progress="none")
    through_service = training.run(served_cfg, progress="none")
    assert through_service["final_step"] == ran["final_step"] == 3
    assert through_service["history"] == ran["history"]


def test_data_service_step_batches_leave_out_a_damaged_person_and_count_it(tmp_path, service, monkeypatch):
    """A person whose record fails leaves its step's batch one pair short, and the run's counter has it."""
    from posedual_tf.data import corrupt, service as served

    cfg = _cfg(tmp_path, "run")
    demo.prepare_data(cfg)
    task = PoseTask(cfg)
    maker_parse = pipeline.labelled_parser

    def failing_parser(maker):
        parse = maker_parse(maker)

        def parse_or_fail(elem, seed):
            out = parse(elem, seed)
            tf.debugging.assert_none_equal(elem["person"], tf.constant(task_first, tf.int64))
            return out

        return parse_or_fail

    task_first = int(next(iter(pipeline.train_dataset(task.train_data, task.sources).take(1)))[0]["person"][0])
    monkeypatch.setattr(pipeline, "labelled_parser", failing_parser)
    counter = corrupt.CorruptionCounter()
    steps = pipeline.step_batches(task.train_data, task.sources)
    first = next(iter(served.served(steps, service, 0, counter)))
    lab, unl = first
    assert lab["person"].shape[0] == unl["person"].shape[0] == cfg.train.batch_size - 1
    assert task_first not in lab["person"].numpy().tolist()
    assert counter.summary()["by_stream"] == {"labelled": 1}


def test_data_service_command_serves_a_dispatcher_and_a_worker(tmp_path):
    """``python -m posedual_tf.data_service dispatcher|worker`` on 127.0.0.1 serve a dataset; a missing
    role or --dispatcher, or a worker whose dispatcher does not answer, is one line."""
    import socket
    import subprocess
    import sys

    from posedual_tf.data import service as served

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    cmd = [sys.executable, "-m", "posedual_tf.data_service"]
    nobody = free_port()
    for args, message in (([], "give the role"), (["worker"], "--dispatcher is required"),
                          (["worker", f"--dispatcher=127.0.0.1:{nobody}"],    # TensorFlow's worker retries silently
                           f"--dispatcher: no tf.data service dispatcher at 127.0.0.1:{nobody}")):
        out = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    port, worker_port = free_port(), free_port()
    procs = [subprocess.Popen(cmd + ["dispatcher", f"--port={port}"], stdout=subprocess.PIPE, text=True)]
    try:
        assert f":{port}" in procs[0].stdout.readline()
        procs.append(subprocess.Popen(cmd + ["worker", f"--dispatcher=127.0.0.1:{port}", f"--port={worker_port}",
                                             f"--worker-address=127.0.0.1:{worker_port}"],
                                      stdout=subprocess.PIPE, text=True))
        assert "worker" in procs[1].stdout.readline()
        steps = tf.data.Dataset.range(5).map(lambda s: (s, {"labelled": s * 0}, {"x": tf.fill([2], s * 10)}))
        got = [int(b["x"][0]) for b in served.served(steps, f"127.0.0.1:{port}", 0).take(5)]
        assert got == [0, 10, 20, 30, 40]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    with pytest.raises(served.ServiceUnreachableError, match=rf"train.data_service: no tf.data service dispatcher "
                                                               rf"at 127.0.0.1:{port} .*dispatcher --port {port}$"):
        served.served(steps, f"127.0.0.1:{port}", 0)          # stopped: one line, not a wait without end
