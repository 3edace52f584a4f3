"""The suite and the library on the machines users have: the strided 1x1 conv formulation that keeps
TensorFlow's oneDNN backward-filter kernel off the CPU's crashing case, native crashes reported as one
failed test (``tests/isolation.py``), and the extras resolving on every platform TensorFlow ships."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ strided 1x1 conv (posedual_tf/models/layers.py)

@pytest.mark.parametrize("batch, cin, h, w", [(3, 8, 24, 16), (1, 3, 7, 5), (5, 16, 6, 4)])
def test_strided_pointwise_conv_equals_the_strided_conv_written_in_numpy(batch, cin, h, w):
    """Outputs and both gradients against x[:, ::2, ::2] @ kernel in float64, odd batches with fewer
    than 16 input channels included (the case that corrupts oneDNN's heap on AVX-512)."""
    import tensorflow as tf

    from posedual_tf.models.layers import PointwiseConv2D

    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, h, w, cin)).astype(np.float32)
    dy_shape = (batch, (h + 1) // 2, (w + 1) // 2, 6)
    dy = rng.normal(size=dy_shape).astype(np.float32)
    layer = PointwiseConv2D(6, 1, 2, use_bias=False)
    layer.build(x.shape)
    k = layer.kernel.numpy()[0, 0].astype(np.float64)

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * dy)
        return [y] + tape.gradient(loss, [x, layer.kernel])

    y, dx, dk = (v.numpy().astype(np.float64) for v in run(tf.constant(x)))
    sub = x[:, ::2, ::2].astype(np.float64)
    want_dx = np.zeros(x.shape)
    want_dx[:, ::2, ::2] = dy.astype(np.float64) @ k.T
    np.testing.assert_allclose(y, sub @ k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dk[0, 0], np.einsum("bhwi,bhwo->io", sub, dy.astype(np.float64)), rtol=1e-5,
                               atol=1e-4)


def test_no_strided_1x1_backward_filter_runs_on_the_cpu():
    """A training step of the ResNet (whose downsample convs are strided 1x1) holds no strided 1x1
    Conv2DBackpropFilter: the kernel that writes past its buffer on AVX-512 never runs on a CPU."""
    import tensorflow as tf

    from posedual_tf.models.resnet import pose_resnet

    net = pose_resnet(18, input_shape=(96, 64, 3), num_joints=4, width=0.125)
    x = tf.zeros([3, 96, 64, 3])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net(x, training=True))
        return tape.gradient(loss, net.trainable_variables)

    graph = step.get_concrete_function(x).graph
    ops = [op for op in graph.get_operations()]
    for f in graph._functions.values():                       # gradient functions traced apart
        ops += list(f.graph.get_operations()) if hasattr(f, "graph") else []
    filters = [op for op in ops if op.type == "Conv2DBackpropFilter"]
    assert filters, "no conv gradient found: the test does not see the step"
    strided_1x1 = [op.name for op in filters
                   if op.get_attr("strides")[1:3] != [1, 1] and op.outputs[0].shape[:2] == [1, 1]]
    assert not strided_1x1, strided_1x1
    # the downsample convs are still there, as 1x1 convs at stride 1 on the subsampled input
    assert sum(op.outputs[0].shape[:2] == [1, 1] for op in filters) >= 3


# ------------------------------------------------------------------------ native crashes (tests/isolation.py)

CRASHING_MODULE = '''
import ctypes
import os


def test_before():
    assert True


def test_aborts():
    os.abort()


def test_segfaults():
    ctypes.string_at(0)


def test_after_the_crashes():
    assert 1 + 1 == 2


def test_fails_plainly():
    assert 1 + 1 == 3
'''


def _outside_env(**extra) -> dict:
    """This process's environment for a command of its own: not marked as an isolation child."""
    from tests.isolation import CHILD_ENV

    return {**{k: v for k, v in os.environ.items() if k != CHILD_ENV}, **extra}


def _crash_suite(tmp_path, *args):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text("from tests.isolation import (pytest_addoption, pytest_configure,\n"
                                          "    pytest_runtest_logreport, pytest_runtest_logstart, "
                                          "pytest_runtest_protocol)\n")
    (tmp_path / "test_crash.py").write_text(CRASHING_MODULE)
    (tmp_path / "test_second.py").write_text("def test_next_module():\n    assert True\n")
    env = _outside_env(PYTHONPATH=str(REPO))
    env["PYTHONFAULTHANDLER"] = ""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_native_crash_is_one_failed_test_naming_the_signal_and_the_suite_goes_on(tmp_path):
    run = _crash_suite(tmp_path)
    out = run.stdout + run.stderr
    summary = out.strip().splitlines()[-1]
    assert "3 failed, 3 passed" in summary, out
    assert run.returncode == 1
    failed = {line.split(" - ")[0].removeprefix("FAILED ").strip(): line for line in out.splitlines()
              if line.startswith("FAILED ")}
    assert set(failed) == {"test_crash.py::test_aborts", "test_crash.py::test_segfaults",
                           "test_crash.py::test_fails_plainly"}, out
    assert "SIGABRT (signal 6)" in out.split("test_aborts")[1].split("test_segfaults")[0]
    assert "SIGSEGV (signal 11)" in out
    assert "assert (1 + 1) == 3" in out                               # a plain failure keeps its own report


def test_without_isolation_the_same_crash_ends_the_run(tmp_path):
    """The control: in one process the abort kills pytest before its summary (what isolation prevents)."""
    run = _crash_suite(tmp_path, "--no-isolation")
    assert run.returncode < 0 or run.returncode == 134, (run.returncode, run.stdout[-2000:])
    assert " passed" not in run.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- the extras on every platform TensorFlow ships

#: uv's target, the macOS version it assumes, and the TensorFlow package each platform must get: written
#: here from the wheels TensorFlow 2.21 publishes (tensorflow-cpu: x86-64 Linux and Windows only)
PLATFORMS = {
    "linux-x86_64": ("x86_64-manylinux_2_28", None, "tensorflow-cpu"),
    "linux-aarch64": ("aarch64-manylinux_2_28", None, "tensorflow"),
    "macos-arm64": ("aarch64-apple-darwin", "14.0", "tensorflow"),   # torch 2.13 (test extra): macOS 14+
    "windows-x86_64": ("x86_64-pc-windows-msvc", None, "tensorflow-cpu"),
}


def _requirements(extra: str) -> list[str]:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def lines(value):
        return [x.strip() for x in value.splitlines() if x.strip() and not x.strip().startswith("#")]

    return lines(cfg["options"]["install_requires"]) + lines(cfg["options.extras_require"][extra])


def _resolve(tmp_path, platform: str, extra: str) -> dict[str, str]:
    """``{name: version}`` that uv resolves for ``extra`` on ``platform`` (wheels only, Python 3.11)."""
    target, macos, _ = PLATFORMS[platform]
    req = tmp_path / f"{platform}-{extra}.in"
    req.write_text("\n".join(_requirements(extra)) + "\n")
    env = dict(os.environ, **({"MACOSX_DEPLOYMENT_TARGET": macos} if macos else {}))
    run = subprocess.run([sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--no-header", "--python-platform",
                          target, "--python-version", "3.11", "--only-binary", ":all:", str(req)],
                         capture_output=True, text=True, env=env, timeout=600)
    if run.returncode and any(s in run.stderr.lower() for s in ("failed to fetch", "dns error", "connect",
                                                                   "network", "offline", "timed out")):
        pytest.skip(f"no package index reachable to resolve for {platform}: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, f"{extra} on {platform}: {run.stderr.strip()}"
    pins = [line.split(";")[0].strip() for line in run.stdout.splitlines() if "==" in line and not line.startswith(" ")]
    return {p.split("==")[0].lower().replace("_", "-"): p.split("==")[1] for p in pins}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("extra", ["cpu", "test"])
def test_each_extra_resolves_on_each_platform_with_its_tensorflow(tmp_path, platform, extra):
    pytest.importorskip("uv")
    pins = _resolve(tmp_path, platform, extra)
    want = PLATFORMS[platform][2]
    other = "tensorflow" if want == "tensorflow-cpu" else "tensorflow-cpu"
    assert pins.get(want, "").startswith("2.21."), (platform, extra, sorted(pins))
    assert other not in pins, (platform, extra, "both TensorFlow packages")
    assert "keras" in pins and "opencv-python-headless" in pins
    if extra == "test":
        assert pins["torch"] == "2.13.0" and "ai-edge-litert" in pins and "pytest" in pins


def test_the_gpu_extra_resolves_on_linux_x86_64_with_cuda(tmp_path):
    pytest.importorskip("uv")
    pins = _resolve(tmp_path, "linux-x86_64", "gpu")
    assert pins["tensorflow"].startswith("2.21.") and "tensorflow-cpu" not in pins
    assert any(name.startswith("nvidia-cudnn") for name in pins), sorted(pins)


# ------------------------------------------------------- bfloat16 under a oneDNN cap (posedual_tf/distribution.py)

def test_bfloat16_under_a_cap_below_its_kernels_is_one_line_and_other_settings_pass(tmp_path):
    from posedual_tf import distribution

    problem = distribution.cpu_precision_problem
    for cap in ("AVX2", "avx2", "AVX", "SSE41", "AVX2_VNNI"):
        line = problem("mixed_bfloat16", {"ONEDNN_MAX_CPU_ISA": cap})
        assert line and "\n" not in line and f"ONEDNN_MAX_CPU_ISA={cap.upper()}" in line
        assert "TF_ENABLE_ONEDNN_OPTS=0" in line
    for env in ({}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
                {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "0"}):
        assert problem("mixed_bfloat16", env) is None, env
    for policy in ("none", "mixed_float16"):
        assert problem(policy, {"ONEDNN_MAX_CPU_ISA": "AVX2"}) is None
    # the train command says it in one line, before any step
    env = _outside_env(ONEDNN_MAX_CPU_ISA="AVX2", TF_ENABLE_ONEDNN_OPTS="1")
    run = subprocess.run([sys.executable, "-m", "posedual_tf.train", "--config", "demo_sup", "--set",
                          f"workdir={tmp_path / 'run'}", "--set", "train.mixed_precision=mixed_bfloat16"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "ONEDNN_MAX_CPU_ISA=AVX2" in line]
    assert len(lines) == 1 and lines[0].startswith("error: train.mixed_precision=mixed_bfloat16"), run.stderr[-2000:]
