"""Shared fixtures: paths to the real samples in ../shared/data and converted records."""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# train.mixed_precision=auto (the demo configs) answers float32 on a CPU without measuring, so that the demo
# runs of the suite compute the same on every machine; tests/test_precision.py measures. Set it to
# mixed_bfloat16 to run them in bfloat16. The cache of measurements is the suite's own, never the user's.
os.environ.setdefault("POSEDUAL_AUTO_PRECISION", "none")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="posedual-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("POSEDUAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def need_shared() -> pathlib.Path:
    if not SHARED.exists():
        pytest.skip(f"real samples not found at {SHARED}")
    return SHARED


def need_bfloat16() -> None:
    """Skip, saying why, where bfloat16 convolutions cannot run here (a oneDNN ISA cap below them:
    tests/isa_matrix.sh at AVX2)."""
    from posedual_tf import distribution

    problem = distribution.cpu_precision_problem("mixed_bfloat16")
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
    return need_shared()


@pytest.fixture(scope="session")
def coco_records(tmp_path_factory, shared):
    """test_coco.json converted (4 images, 12 people) -> prefix."""
    from posedual_tf.conversion import coco

    out = tmp_path_factory.mktemp("coco") / "val"
    coco.convert(str(shared / "coco/test_coco.json"), str(shared / "coco"), str(out), workers=1)
    return str(out)


@pytest.fixture(scope="session")
def det_records(tmp_path_factory, shared):
    """image_info_test_coco.json + test_coco_det_AP_H_56.json converted -> prefix."""
    from posedual_tf.conversion import detections

    out = tmp_path_factory.mktemp("det") / "det"
    detections.convert(str(shared / "coco/image_info_test_coco.json"), str(shared / "coco/test_coco_det_AP_H_56.json"),
                       str(shared / "coco"), str(out), workers=1)
    return str(out)


# ------------------------------------------------------------------------------ tiny train-step helpers
# Shared by the step tests. Crops are 96x64 (H x W): portrait and non-square like the reference's
# 256x192, so a swapped height/width anywhere in a step shows. Both sides are multiples of 32, so the
# ResNet keeps its stride of 4 (a 64x48 crop gives a 16x16 heatmap, in the reference's ResNet too).

H, W = 96, 64
HM_H, HM_W = 24, 16
#: tiny steps of the paper configs: small batches, BatchNorm over each device's share (no per-GPU groups)
TINY = [f"data.image_size=[{W},{H}]", f"data.heatmap_size=[{HM_W},{HM_H}]", "model.width_multiplier=0.125",
        "train.replica_batch=0"]
TINY_SETS = [f"--set={t}" for t in TINY]
#: the union-24 ids a COCO labelled set supervises
#: The union joints that swap under a horizontal flip, by name, written here (not taken from joints.py).
MIRRORED_NAMES = [("rhip", "lhip"), ("rkne", "lkne"), ("rank", "lank"), ("rsho", "lsho"), ("relb", "lelb"),
                  ("rwri", "lwri"), ("reye", "leye"), ("rear", "lear")]


def union_flip_perm() -> np.ndarray:
    """``perm[u]``: the union joint that ``u`` becomes in a mirrored image (from :data:`MIRRORED_NAMES`)."""
    from posedual_tf import joints

    perm = np.arange(joints.NUM_UNION)
    for a, b in MIRRORED_NAMES:
        i, k = joints.UNION_NAMES.index(a), joints.UNION_NAMES.index(b)
        perm[i], perm[k] = k, i
    return perm


LABELLED_IDS = [1, 2, 3, 4, 5, 6, 11] + list(range(14, 24))
#: unlabelled weights: COCO's joints on, the 7 union ids COCO never labels off
UNL_WEIGHT = [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0] + [1] * 10


def tiny_batch(seed=0, b=4):
    """A random (labelled, unlabelled) batch at the tiny size."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lab = {"image": rng.normal(size=(b, H, W, 3)).astype(np.float32),
           "target": rng.uniform(size=(b, HM_H, HM_W, 24)).astype(np.float32),
           "weight": (rng.uniform(size=(b, 24)) > 0.3).astype(np.float32)}
    unl = {"image": rng.normal(size=(b, H, W, 3)).astype(np.float32),
           "weight": np.tile(np.float32(UNL_WEIGHT), (b, 1))}
    return lab, unl


def tiny_method(name, *extra):
    """(cfg, nets, compiled method) of config ``name`` at the tiny size, with ``extra`` overrides."""
    from posedual_tf import config, methods
    from posedual_tf.models import builder

    cfg = config.load(name, TINY + list(extra))
    nets = builder.build_networks(cfg)
    m = methods.build_method(cfg, nets, labelled_ids=LABELLED_IDS)
    m.compile(optimizer=methods.make_optimizer(cfg, 10))
    return cfg, nets, m


def twin_methods(name, extra=(), extra_b=(), seed=None):
    """Two copies of method ``name`` (``extra`` overrides; the second also ``extra_b``) with the same
    initial weights: ``((nets_a, a), (nets_b, b))``. ``seed`` fixes those weights."""
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    _, nets_a, a = tiny_method(name, *extra)
    _, nets_b, b = tiny_method(name, *extra, *extra_b)
    for src, dst in zip(nets_a, nets_b):
        dst.set_weights(src.get_weights())
    return (nets_a, a), (nets_b, b)

def mse_np(p, t, w):
    """The reference JointsMSELoss written out in float64: sum 0.5 w^2 (P - T)^2 / (J B h w)."""
    import numpy as np

    p, t, w = (np.asarray(v, np.float64) for v in (p, t, w))
    b, h, wd, j = p.shape
    return float(np.sum(0.5 * (w[:, None, None, :] ** 2) * (p - t) ** 2) / (j * b * h * wd))


class FakeRng:
    """Hands out the queued arrays in order, checking each draw's shape: injected draws."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def _pop(self, shape):
        import numpy as np
        import tensorflow as tf

        v = np.asarray(self.draws.pop(0))
        assert list(v.shape) == [int(s) for s in shape], (v.shape, shape)
        return tf.constant(v)

    def uniform(self, shape, minval=0, maxval=None, dtype=None):
        import tensorflow as tf

        return tf.cast(self._pop(shape), dtype or tf.float32)

    def normal(self, shape):
        import tensorflow as tf

        return tf.cast(self._pop(shape), tf.float32)

    def gamma(self, shape, alpha):
        import tensorflow as tf

        return tf.cast(self._pop(shape), tf.float32)


def moving_stats(nets):
    """Every BatchNorm running mean and variance of ``nets``, in layer order."""
    from posedual_tf.models.layers import BatchNorm

    return [v.numpy() for net in nets for layer in net.layers if isinstance(layer, BatchNorm)
            for v in (layer.moving_mean, layer.moving_variance)]


def grads_by_position(nets, pairs):
    """Gradients keyed by (network, variable path): both networks name their variables alike."""
    owner = {id(v): (n, v.path) for n, net in enumerate(nets) for v in net.trainable_variables}
    return {owner[id(v)]: g for g, v in pairs}


def assert_close(x, y, what, rtol=2e-4, atol=2e-6):
    """``y`` equals ``x`` to ``rtol``, and to ``atol`` times the largest magnitude of ``x`` (at least 1)."""
    import numpy as np

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = max(np.abs(x).max(), 1e-12)
    np.testing.assert_allclose(y, x, rtol=rtol, atol=atol * max(scale, 1.0), err_msg=what)


#: A line of TensorFlow, absl, Keras or Python warnings (commands show them only with --verbose).
FOREIGN_WARNING = r"^[WEF]\d{4} |^WARNING|Warning:|warnings\.warn|tensorflow|keras|absl"


def run_in_pty(args, cwd, columns: int = 80, timeout: float = 900):
    """``(status, output)`` of a command run as in a terminal of ``columns`` columns (a pty: progress bars
    and TensorFlow's logs behave as a user sees them), stdout and stderr together, escapes removed, lines
    split at \\n and \\r (a progress bar's redraws are lines of their own)."""
    import fcntl
    import pty
    import re
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = dict(os.environ, COLUMNS=str(columns), TERM="xterm")
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:                 # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    status = proc.wait(timeout)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    return status, re.split(r"\r\n|\r|\n", text)


def run_python(args, **kw):
    """``python ARGS`` in a subprocess; its CompletedProcess with text stdout and stderr."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, **kw)


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 now (for the servers of a test's processes)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


#: --set flags for a demo run of 3 epochs x 3 steps at the smallest size
SMALL_DEMO = ["--set=data.synthetic.labelled_images=12", "--set=data.synthetic.unlabelled_images=12",
              "--set=data.synthetic.val_images=4", "--set=train.batch_size=4", "--set=train.steps_per_epoch=3",
              "--set=train.epochs=3", "--set=train.val_interval=10", "--set=model.width_multiplier=0.125"]


def records_with_a_bad_image(shared, tmp_path, bad_index):
    """The COCO samples written by hand with image ``bad_index``'s bytes replaced by garbage."""
    import json

    import tensorflow as tf

    from posedual_tf.data import records
    from posedual_tf.conversion import coco

    entries, _, _, _ = coco.build_entries(str(shared / "coco/test_coco.json"), str(shared / "coco"))
    prefix = str(tmp_path / f"bad{bad_index}")
    with tf.io.TFRecordWriter(records.shard_paths(prefix, 1)[0]) as w:
        for i, e in enumerate(entries):
            data = open(e.path, "rb").read() if i != bad_index else b"\xff\xd8 this is not a jpeg"
            w.write(records.encode_example(e, data, 17).SerializeToString())
    people = [len(e.persons) for e in entries]
    shard = {"file": os.path.basename(records.shard_paths(prefix, 1)[0]), "records": 4, "instances": sum(people),
             "record_people": people}
    with open(prefix + ".json", "w") as f:
        json.dump({"joint_set": "coco", "num_joints": 17, "num_images": 4, "shards": [shard],
                   "num_instances": sum(people)}, f)
    return prefix, people[bad_index]

# ------------------------------------------------------------------------------ bad-input helpers
COCO_NAMES = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"]


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def coco_copy(shared, folder: pathlib.Path, file_names: dict[str, str] | None = None) -> pathlib.Path:
    """test_coco.json (4 images) copied into ``folder`` with its images; ``file_names`` renames entries."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((shared / "coco/test_coco.json").read_text())
    for img in data["images"]:
        img["file_name"] = (file_names or {}).get(img["file_name"], img["file_name"])
    for name in COCO_NAMES:
        shutil.copy(shared / "coco" / name, folder / name)
    path = folder / "x.json"
    path.write_text(json.dumps(data))
    return path


def tiny_demo_cfg(tmp_path, *extra):
    """demo_sup at the smallest size, its workdir ``tmp_path/run``."""
    from posedual_tf import config

    return config.load("demo_sup", [f"workdir={tmp_path / 'run'}", "data.image_size=[64,96]",
                                    "data.heatmap_size=[16,24]", "model.width_multiplier=0.125", *extra])


#: The export tests' network: PoseDual at 96x128, 1/8 width.
EXPORT_SETS = ["data.image_size=[96,128]", "data.heatmap_size=[24,32]", "model.width_multiplier=0.125"]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``(cfg, nets, SavedModel folder)``: a fixed-seed PoseDual ensemble at 96x128 exported once for the
    export and TFLite tests."""
    from posedual_tf import checkpoints, config, export
    from posedual_tf.models import builder

    import keras

    keras.utils.set_random_seed(3)      # fixed weights: random ones can put two near-equal maxima in a heatmap
    root = tmp_path_factory.mktemp("export")
    cfg = config.load("coco1k_dual", EXPORT_SETS)
    nets = builder.build_networks(cfg)
    checkpoints.save_nets(nets, str(root / "weights"))
    export.export(cfg, str(root / "weights"), str(root / "saved"), net="ensemble")
    return cfg, nets, str(root / "saved")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """``(cfg, weights folder, SavedModel)``: net 1 of a tiny PoseDual at 96x64 (random, fixed seed), for the
    tests that need some model to run, not a particular one."""
    import keras

    from posedual_tf import checkpoints, config, export
    from posedual_tf.models import builder

    keras.utils.set_random_seed(1)
    root = tmp_path_factory.mktemp("tiny_export")
    cfg = config.load("coco1k_dual", TINY)
    checkpoints.save_nets(builder.build_networks(cfg), str(root / "weights"))
    export.export(cfg, str(root / "weights"), str(root / "saved"), net="1")
    return cfg, str(root / "weights"), str(root / "saved")


# Every test module runs in a child process: a native crash is one failed test (tests/isolation.py).
from tests.isolation import (pytest_addoption, pytest_configure, pytest_runtest_logreport,  # noqa: E402,F401
                             pytest_runtest_logstart, pytest_runtest_protocol)
