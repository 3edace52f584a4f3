"""Every wait on another process is bounded and explained (issue #41, rule 5): a tf.data service without
workers or with a lost step, a cluster task that never starts, a cluster task lost mid-run. Each says
what it waits for and ends with one line naming the peer and ``train.peer_timeout_s``. (The workdir lock
never waits: a second writer is refused at once, tests/test_one_writer.py.)"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from posedual_tf import peers
from posedual_tf.data import service
from tests.conftest import REPO, SMALL_DEMO, free_ports


def _drain(iterator, within_s):
    """What ``iterator`` yields and the error it ends with, read in a thread; fails when it is still
    waiting after ``within_s`` (an unbounded wait)."""
    out = {"items": [], "error": None}

    def read():
        try:
            for item in iterator:
                out["items"].append(item)
        except Exception as e:  # noqa: BLE001 - the test reads it
            out["error"] = e

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), f"still waiting after {within_s} s"
    return out["items"], out["error"]


def _stream(steps, then_block=False):
    """A fake service stream: ``(step, dropped, batch)`` for ``steps``, then the end, or a wait without end."""
    for s in steps:
        yield s, {"labelled": 0}, f"batch {s}"
    if then_block:
        threading.Event().wait()


# ------------------------------------------------------------------------------------- the data service
def test_service_batches_arriving_out_of_order_come_in_step_order():
    items, error = _drain(service.in_order(_stream([5, 3, 4, 6]), 3, timeout_s=5, address="h:1"), 10)
    assert error is None and [b for _, b in items] == ["batch 3", "batch 4", "batch 5", "batch 6"]


def test_a_step_lost_by_a_worker_ends_the_stream_with_one_line_naming_it():
    items, error = _drain(service.in_order(_stream([0, 2, 3]), 0, timeout_s=5, address="h:1"), 10)
    assert [b for _, b in items] == ["batch 0"]
    assert isinstance(error, peers.PeerTimeoutError)
    assert str(error).startswith("train.data_service: step 1 did not come from the tf.data service at h:1 while "
                                 "2 later steps did: steps up to 3 came, so a worker stopped while making it")
    assert "\n" not in str(error)


def test_a_lost_step_is_not_waited_for_while_later_ones_pile_up(monkeypatch):
    monkeypatch.setattr(service, "MAX_AHEAD", 4)
    def later():                                               # step 0 never comes; the rest keep coming
        for s in range(1, 10 ** 9):
            time.sleep(0.001)
            yield s, {}, s

    items, error = _drain(service.in_order(later(), 0, timeout_s=3600, address="h:1"), 20)
    assert items == [] and isinstance(error, peers.PeerTimeoutError)
    assert "step 0 did not come" in str(error) and "while 5 later steps did" in str(error)


@pytest.mark.parametrize("timeout_s, notice_s, notices", [(1.5, 0.5, 1), (1.0, 5.0, 0)])
def test_a_service_that_sends_nothing_is_explained_then_given_up_after_the_bound(capsys, timeout_s, notice_s,
                                                                                  notices):
    """A line saying what the run waits for once the wait lasts ``notice_s`` (not when the bound comes
    first), and one line giving up at ``timeout_s``: not before, not much after."""
    start = time.monotonic()
    items, error = _drain(service.in_order(_stream([0], then_block=True), 0, timeout_s=timeout_s, address="h:7",
                                           notice_s=notice_s), 30)
    waited = time.monotonic() - start
    assert [b for _, b in items] == ["batch 0"]
    assert timeout_s <= waited < timeout_s + 5
    assert str(error) == (f"train.data_service: step 1 did not come from the tf.data service at h:7 within "
                          f"{timeout_s:g} s (train.peer_timeout_s): no worker is running or the dispatcher stopped "
                          f"(start one: python -m posedual_tf.data_service worker --dispatcher h:7); restart it: "
                          f"the run resumes from its last checkpoint")
    lines = capsys.readouterr().out.splitlines()
    assert sum("train.data_service: waiting for step 1 from the tf.data service at h:7" in x for x in lines) == notices


def test_training_on_a_service_without_workers_ends_with_the_services_line(tmp_path):
    """A real dispatcher with no worker: training.run raises the one-line PeerTimeoutError (not TensorFlow's
    wrapped text) after train.peer_timeout_s."""
    import tensorflow as tf

    from posedual_tf import cli, config, demo, training

    svc = tf.data.experimental.service
    dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
    address = "127.0.0.1:" + dispatcher.target.rsplit(":", 1)[1]
    sets = [s.removeprefix("--set=") for s in SMALL_DEMO]
    cfg = config.load("demo_dual", [f"workdir={tmp_path / 'run'}", *sets, "train.epochs=1",
                                    f"train.data_service={address}", "train.peer_timeout_s=3"])
    demo.prepare_data(cfg)
    try:
        with pytest.raises(peers.PeerTimeoutError) as e:
            training.run(cfg, progress="none")
    finally:
        dispatcher.stop()
    line = cli.one_line(e.value)
    assert line.startswith(f"train.data_service: step 0 did not come from the tf.data service at {address} within "
                           f"3 s (train.peer_timeout_s)") and "\n" not in line


# ------------------------------------------------------------------------------------------ the cluster
def test_a_bounded_wait_says_what_it_waits_for_then_names_the_missing_task_and_ends_the_process():
    """The watcher acts even while this process is blocked in TensorFlow's C++ (here: in a sleep that
    holds no Python thread free to act); a wait that ends in time leaves no line and no exit."""
    own, absent = free_ports(2)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    cluster = {"chief": [f"127.0.0.1:{own}"], "worker": [f"127.0.0.1:{listening.getsockname()[1]}",
                                                         f"127.0.0.1:{absent}"]}
    def code(timeout, sleep):
        return textwrap.dedent(f"""
            import time
            from posedual_tf import peers
            with peers.bounded({timeout}, "waiting for the others", "gave up on {{missing}}", {cluster!r},
                               ("chief", 0), notice_s=0.5):
                time.sleep({sleep})
            print("left the wait")
        """)

    try:
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-c", code(2, 60)], capture_output=True, text=True,
                             timeout=60, cwd=REPO)
        waited = time.monotonic() - start
        assert out.returncode == -9 and 2 <= waited < 30
        assert out.stdout.splitlines() == ["waiting for the others"]
        assert out.stderr.strip().splitlines()[-1] == f"error: gave up on worker 1 (127.0.0.1:{absent})"
        out = subprocess.run([sys.executable, "-c", code(20, 0.1)], capture_output=True,
                             text=True, timeout=60, cwd=REPO)
        assert out.returncode == 0 and out.stdout.splitlines() == ["left the wait"] and out.stderr == ""
    finally:
        listening.close()


def test_a_cluster_task_that_never_starts_ends_train_with_one_line(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "posedual_tf.train", "--config", "demo_sup",
                          f"--set=workdir={tmp_path / 'run'}", "--set=train.strategy=multi_worker",
                          "--set=train.peer_timeout_s=4"], capture_output=True, text=True, env=env, timeout=120,
                         cwd=REPO)
    assert out.returncode != 0 and time.monotonic() - start < 90
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: TF_CONFIG: worker 1 (127.0.0.1:{ports[1]}) did not join within 4 s (train.peer_timeout_s); start "
        f"every task TF_CONFIG names, each with its own task, or raise train.peer_timeout_s")


LOSES_A_PEER = textwrap.dedent("""
    import json, os, sys, time
    import tensorflow as tf
    from posedual_tf import distribution, peers
    strategy = distribution.make_strategy("multi_worker", peer_timeout_s=5)
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    @tf.function
    def step():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.constant(1.0)))

    start = time.monotonic()
    try:
        for i in range(100000):
            assert float(strategy.experimental_local_results(step())[0]) == 2.0
            if index == 1 and i == 5:
                if sys.argv[1] == "exits":
                    os._exit(0)                    # this task is lost mid-run
                time.sleep(3600)                   # this task is stuck: alive, its server answering
            time.sleep(0.02)
    except tf.errors.OpError as e:
        cluster, own = distribution.tf_config_cluster()
        print(json.dumps({"seconds": time.monotonic() - start, "line": str(peers.from_tf_error(e, cluster, 5, own)),
                      "error": type(e).__name__}))
""")


@pytest.mark.parametrize("peer", ["exits", "stalls"])
def test_a_cluster_task_lost_mid_run_ends_the_other_within_the_bound(peer):
    """A task that ends mid-run is named (its port is closed); one that stalls (alive, its server
    answering: TensorFlow's health check finds nothing wrong) is waited for 5 s, not without end."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [subprocess.Popen([sys.executable, "-c", LOSES_A_PEER, peer], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                                         "task": {"type": "worker", "index": i}})))
             for i in range(2)]
    try:
        out = procs[0].communicate(timeout=120)[0]
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["seconds"] < 25                        # the 5 s bound, not TensorFlow's health check (~30-60 s)
    resume = "restart every task TF_CONFIG names: the run resumes from its last checkpoint"
    if peer == "exits":          # its closed port fails the collective at once, or the wait ends at the bound
        gone = f"worker 1 (127.0.0.1:{ports[1]}) stopped answering"
        assert seen["line"] in (f"cluster: {gone} during training; {resume}", f"cluster: a collective of the step "
                                f"waited 5 s (train.peer_timeout_s) for the other tasks: {gone}; {resume}"), seen
    else:
        assert seen["line"] == (f"cluster: a collective of the step waited 5 s (train.peer_timeout_s) for the other "
                                f"tasks: another task is stuck or stopped; {resume}")


def test_tensorflows_word_that_a_task_is_down_names_it_and_its_address():
    import tensorflow as tf

    cluster = {"chief": ["10.0.0.1:1"], "worker": ["10.0.0.2:2", "10.0.0.3:3"]}
    e = tf.errors.UnavailableError(None, None, "cluster check alive failed, /job:worker/replica:0/task:1 is down")
    assert str(peers.from_tf_error(e, cluster, 9)) == ("cluster: worker 1 (10.0.0.3:3) stopped answering during "
                                                       "training; restart every task TF_CONFIG names: the run "
                                                       "resumes from its last checkpoint")
    assert peers.from_tf_error(tf.errors.InvalidArgumentError(None, None, "shape [3] vs [4]"), cluster, 9) is None
    assert peers.from_tf_error(ValueError("x"), cluster, 9) is None
