"""``train.mixed_precision: auto``: the faster precision for the machine a run trains on.

On a GPU the choice follows the card: ``mixed_bfloat16`` from compute capability 8.0 (Ampere) on, whose
tensor cores take bfloat16, else ``mixed_float16`` with loss scaling. On a CPU it is measured: one
network of the run's shapes (a forward and backward pass at up to 8 people) in float32 and in bfloat16,
timed in turn in a separate process (no TensorFlow state in the trainer before its strategy), and
bfloat16 wins when it is at least 1.05x faster (MARGIN; within noise float32 is kept). The result is cached per machine and network in ``$XDG_CACHE_HOME/posedual_tf/precision.json``
(``~/.cache`` when unset), keyed by the CPU, its flags, the core count, TensorFlow's version and the
oneDNN settings. A resumed run keeps the precision it started with; a CPU cluster (TF_CONFIG with
several tasks) trains in float32, so that every task trains alike. ``POSEDUAL_AUTO_PRECISION`` (none,
mixed_bfloat16) gives a CPU's answer without measuring.

Example (a GPU's rule; no device needed):
    >>> from posedual_tf.precision import gpu_policy
    >>> gpu_policy((8, 0))[0], gpu_policy((7, 5))[0]
    ('mixed_bfloat16', 'mixed_float16')
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time

#: the environment variable that answers ``auto`` on a CPU without a measurement
OVERRIDE = "POSEDUAL_AUTO_PRECISION"
#: how much faster bfloat16 must be to be chosen on a CPU: below it the two are within the measurement's noise,
#: and float32 (exact to the references' arithmetic) is kept
MARGIN = 1.05
#: bumped when the measurement changes, so that cached answers of an older one are not reused
PROBE_VERSION = 1
CACHE_NAME = "precision.json"


@dataclasses.dataclass
class Choice:
    """What ``train.mixed_precision`` resolved to, and why (one printable line)."""

    setting: str
    policy: str
    why: str
    seconds: dict = dataclasses.field(default_factory=dict)     # policy -> seconds per probe pass
    cached: bool = False

    def line(self) -> str:
        """The choice, then why on lines of at most 80 columns (a long path stays whole)."""
        why = textwrap.fill(f"({self.why})", 80, initial_indent="  ", subsequent_indent="   ",
                            break_long_words=False, break_on_hyphens=False)
        return f"train.mixed_precision={self.setting}: {self.policy}\n{why}"

    def record(self) -> dict:
        """What ``train_result.json`` keeps of it."""
        return {"setting": self.setting, "policy": self.policy, "why": self.why,
                "probe_s": {k: round(v, 4) for k, v in self.seconds.items()}, "cached": self.cached}


def gpu_policy(capability: tuple[int, int] | None) -> tuple[str, str]:
    """(policy, why) for a GPU of CUDA compute ``capability``: bfloat16 where its tensor cores take it
    (8.0, Ampere, and later), else float16 with loss scaling."""
    if capability is None:
        return "mixed_float16", "a GPU of unknown compute capability: float16 with loss scaling"
    shown = ".".join(map(str, capability))
    if tuple(capability) >= (8, 0):
        return "mixed_bfloat16", f"GPU of compute capability {shown}: bfloat16 tensor cores"
    return "mixed_float16", f"GPU of compute capability {shown}, before Ampere: float16 with loss scaling"


def _gpu_capability() -> tuple[bool, tuple[int, int] | None]:
    """(a GPU is visible, its compute capability). Lists physical devices only, which leaves TensorFlow's
    runtime uninitialised (MultiWorkerMirroredStrategy must still be creatable after it)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False, None
    try:
        return True, tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability"))
    except (TypeError, ValueError, RuntimeError):
        return True, None


def _cpuinfo() -> dict:
    """The CPU's model name and the flags that decide its bfloat16 speed (vector, matrix, bf16/fp16)."""
    info = {"machine": platform.machine(), "model": platform.processor()}
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return info
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())          # the first processor's
    info["model"] = fields.get("model name", info["model"])
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    info["flags"] = " ".join(f for f in flags if f.startswith(("avx", "amx", "bf16", "sve", "fp16", "asimd", "fma")))
    return info


def _tf_version() -> str:
    from importlib import metadata

    for dist in ("tensorflow-cpu", "tensorflow", "tensorflow-macos"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def machine_key(environ=None) -> dict:
    """What a cached measurement depends on besides the network: the CPU, its vector flags, the cores
    this process may use, TensorFlow's version and oneDNN's settings."""
    environ = os.environ if environ is None else environ
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {**_cpuinfo(), "cores": cores, "tensorflow": _tf_version(), "probe": PROBE_VERSION,
            **{k: environ.get(k, "") for k in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")}}


def probe_spec(model: dict, image_size: list[int], heatmap_size: list[int], batch: int) -> dict:
    """The network a CPU measurement times: ``model`` (``cfg.model`` as a dict) at the run's sizes, at
    the run's batch up to 8."""
    return {"model": model, "image_size": list(image_size), "heatmap_size": list(heatmap_size),
            "batch": max(1, min(int(batch), 8))}


def cache_path(environ=None) -> str:
    environ = os.environ if environ is None else environ
    root = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "posedual_tf", CACHE_NAME)


def _cache_key(spec: dict, environ) -> str:
    text = json.dumps({"machine": machine_key(environ), "spec": spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache(path: str) -> tuple[dict, str | None]:
    """(the cache's entries, a line saying why it was unreadable, or None)."""
    if not os.path.exists(path):
        return {}, None
    try:
        with open(path) as f:
            entries = json.load(f)
        if not isinstance(entries, dict):
            raise ValueError("not a JSON object")
        return entries, None
    except (OSError, ValueError) as e:
        return {}, f"{path}: unreadable ({e}); measuring again"


def _write_cache(path: str, entries: dict) -> str | None:
    """Write the cache (a folder of ours, with its ownership list); a line saying why not, or None."""
    from posedual_tf import files

    try:
        folder = files.claim(os.path.dirname(path), "cache", setting="precision cache")
        files.write_json_atomic(files.own(folder, CACHE_NAME, "cache"), entries)
    except (OSError, files.NotOursError) as e:
        return f"the measurement is not cached: {e}"
    return None


def measure(spec: dict, rounds: int = 3, budget_s: float = 1.0) -> dict:
    """Seconds per forward and backward pass of the network of ``spec`` at its batch, in float32
    (``none``) and in ``mixed_bfloat16``: the median of at least ``rounds`` passes after one untimed
    pass, more while a precision has had less than ``budget_s`` of timing (a small network's passes are
    short and noisy), the two precisions timed in turn (a drift of the machine's speed touches both).
    Creates TensorFlow state: run it in its own process (:func:`resolve` does)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from posedual_tf.config import Config
    from posedual_tf.config_schema import ModelConfig
    from posedual_tf.models import builder

    cfg = Config()
    cfg = dataclasses.replace(cfg, model=ModelConfig(**spec["model"]),
                              data=dataclasses.replace(cfg.data, image_size=spec["image_size"],
                                                       heatmap_size=spec["heatmap_size"]))
    w, h = spec["image_size"]
    x = tf.constant(np.random.default_rng(0).normal(size=(spec["batch"], h, w, 3)).astype("float32"))
    passes = {}
    for policy in ("none", "mixed_bfloat16"):
        with builder.precision(policy):
            net = builder.build_network(cfg)

        def one_pass(net=net):
            with tf.GradientTape() as tape:
                out = tf.cast(net(x, training=True), tf.float32)
                loss = tf.reduce_mean(tf.square(out))
            grads = tape.gradient(loss, net.trainable_variables)
            return tf.add_n([tf.reduce_sum(g) for g in grads])
        passes[policy] = tf.function(one_pass)
        passes[policy]().numpy()
    times = {p: [] for p in passes}
    while len(times["none"]) < rounds or (min(sum(t) for t in times.values()) < budget_s and len(times["none"]) < 200):
        for policy, fn in passes.items():
            start = time.perf_counter()
            fn().numpy()
            times[policy].append(time.perf_counter() - start)
    keras.backend.clear_session()
    return {p: statistics.median(t) for p, t in times.items()}


def _measure_elsewhere(spec: dict) -> dict:
    """:func:`measure` in a child process (TensorFlow's runtime in the trainer stays unstarted)."""
    out = subprocess.run([sys.executable, "-m", "posedual_tf.precision", json.dumps(spec)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise RuntimeError(last)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _seconds(entry) -> dict | None:
    """``{"none": s, "mixed_bfloat16": s}`` from a measurement or a cache entry, or None unless both are
    positive numbers."""
    try:
        seconds = {p: float(entry[p]) for p in ("none", "mixed_bfloat16")}
    except (TypeError, KeyError, ValueError):
        return None
    return seconds if all(0 < s < float("inf") for s in seconds.values()) else None


def resolve(setting: str, spec: dict, resumed: str | None = None, cluster_tasks: int = 1,
            environ=None, measure_fn=None, say=print) -> Choice:
    """The precision ``setting`` trains in on this machine (:class:`Choice`); anything but ``auto`` is
    itself. ``resumed``: the precision of the run this one resumes (kept). ``measure_fn``: what times
    ``spec`` (tests; a child process by default). ``say`` gets one line before a measurement (it takes
    seconds); warnings are in ``why``."""
    environ = os.environ if environ is None else environ
    if setting != "auto":
        return Choice(setting, setting, "as set")
    if resumed and resumed != "auto":
        return Choice(setting, resumed, "the precision of the run it resumes")
    has_gpu, capability = _gpu_capability()
    if has_gpu:
        return Choice(setting, *gpu_policy(capability))
    forced = environ.get(OVERRIDE, "").strip()
    if forced:
        if forced not in ("none", "mixed_bfloat16"):
            from posedual_tf.config import ConfigError

            raise ConfigError(f"{OVERRIDE}={forced!r}: expected none or mixed_bfloat16 (what "
                              "train.mixed_precision=auto trains in on a CPU)")
        return Choice(setting, forced, f"{OVERRIDE}, not measured")
    if cluster_tasks > 1:
        return Choice(setting, "none", f"a CPU cluster of {cluster_tasks} tasks trains alike in float32; set "
                                       "train.mixed_precision=mixed_bfloat16 for bfloat16")
    from posedual_tf import distribution

    if distribution.cpu_precision_problem("mixed_bfloat16", environ):
        return Choice(setting, "none", f"oneDNN under ONEDNN_MAX_CPU_ISA={environ.get('ONEDNN_MAX_CPU_ISA')} "
                                       "has no bfloat16 convolution")
    path = cache_path(environ)
    entries, unreadable = _read_cache(path)
    key = _cache_key(spec, environ)
    notes = [unreadable] if unreadable else []
    seconds = _seconds(entries.get(key))
    cached = seconds is not None
    if not cached:
        if key in entries:
            notes.append(f"{path}: its entry for this machine holds no two positive times; measured again")
        say("train.mixed_precision=auto: timing the network in float32 and bfloat16 on this CPU (once; cached)")
        try:
            seconds = _seconds((measure_fn or _measure_elsewhere)(spec))
            if seconds is None:
                raise ValueError("no two positive times")
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            return Choice(setting, "none", f"the bfloat16 measurement failed ({str(e)[:200]}); float32")
        entries[key] = {**{p: round(s, 5) for p, s in seconds.items()}, "measured": time.strftime("%Y-%m-%d"),
                        "cpu": machine_key(environ).get("model", "")}
        failed = _write_cache(path, entries)
        notes += [failed] if failed else []
    ratio = seconds["none"] / seconds["mixed_bfloat16"]
    policy = "mixed_bfloat16" if ratio >= MARGIN else "none"
    why = (f"bfloat16 {ratio:.2f}x the speed of float32 on this CPU"
           + (f", under {MARGIN:g}x: float32 kept; " if 1 <= ratio < MARGIN else "; ")
           + (f"measured earlier: {path}" if cached else f"measured now, cached in {path}"))
    return Choice(setting, policy, "; ".join([why] + notes), seconds, cached)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(measure(json.loads(sys.argv[1]))))
