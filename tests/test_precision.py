"""#45: ``train.mixed_precision: auto``: the GPU's rule, the CPU's measured and cached choice, what
keeps it fixed (a resumed run, a cluster, an ISA cap, the override), and where a run records it."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from posedual_tf import config, demo, monitoring, precision, training
from posedual_tf.config import ConfigError
from tests.conftest import SMALL_DEMO, need_bfloat16

SPEC = {"model": {"depth": 18}, "image_size": [64, 96], "heatmap_size": [16, 24], "batch": 8}


@pytest.mark.parametrize("capability, expected", [((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16"),
                                                  ((8, 9), "mixed_bfloat16"), ((7, 5), "mixed_float16"),
                                                  ((6, 1), "mixed_float16"), (None, "mixed_float16")])
def test_a_gpu_trains_in_bfloat16_from_ampere_on_else_float16(capability, expected):
    assert precision.gpu_policy(capability)[0] == expected


class Timer:
    """A measurement that counts its calls and returns fixed seconds."""

    def __init__(self, none: float, bf16: float):
        self.seconds, self.calls = {"none": none, "mixed_bfloat16": bf16}, 0

    def __call__(self, spec):
        self.calls += 1
        return dict(self.seconds)


def _env(tmp_path, **extra) -> dict:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}


@pytest.mark.parametrize("none_s, bf16_s, expected", [(2.0, 1.0, "mixed_bfloat16"), (1.0, 1.3, "none"),
                                                     (1.06, 1.0, "mixed_bfloat16"), (1.03, 1.0, "none")])
def test_a_cpu_trains_in_the_faster_measured_precision_and_says_by_how_much(tmp_path, none_s, bf16_s, expected):
    """bfloat16 when it is faster by 5 % or more; within that (a tie in the noise) float32 is kept, and said."""
    timer = Timer(none_s, bf16_s)
    choice = precision.resolve("auto", SPEC, environ=_env(tmp_path), measure_fn=timer)
    assert (choice.policy, timer.calls, choice.cached) == (expected, 1, False)
    assert f"bfloat16 {none_s / bf16_s:.2f}x the speed of float32" in choice.why
    lines = choice.line().splitlines()              # a terminal's width; the cache's path kept whole on its own line
    assert all(len(line) <= 80 for line in lines if str(tmp_path) not in line) and len(lines) >= 3
    assert any(line.strip().startswith(str(tmp_path)) for line in lines)
    assert ("float32 kept" in choice.why) == (none_s == 1.03)
    assert choice.record()["probe_s"] == {"none": none_s, "mixed_bfloat16": bf16_s}


def test_the_measurement_is_cached_per_network_and_per_onednn_setting(tmp_path):
    env = _env(tmp_path)
    first, said = Timer(2.0, 1.0), []
    precision.resolve("auto", SPEC, environ=env, measure_fn=first, say=said.append)
    assert len(said) == 1 and "timing the network in float32 and bfloat16" in said[0]     # before the wait
    again = Timer(1.0, 2.0)            # a cached answer is not measured again, and answers as measured
    choice = precision.resolve("auto", SPEC, environ=env, measure_fn=again, say=said.append)
    assert (again.calls, choice.cached, choice.policy, len(said)) == (0, True, "mixed_bfloat16", 1)
    assert "measured earlier" in choice.why
    for other_spec, other_env in [({**SPEC, "image_size": [192, 256]}, env),
                                  (SPEC, {**env, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})]:
        timer = Timer(1.0, 2.0)
        assert precision.resolve("auto", other_spec, environ=other_env, measure_fn=timer).policy == "none"
        assert timer.calls == 1
    cache = tmp_path / "cache" / "posedual_tf"
    assert len(json.loads((cache / "precision.json").read_text())) == 3
    assert "precision.json" in json.loads((cache / ".posedual_tf.json").read_text())["entries"]    # ours, listed


def test_an_unreadable_cache_is_measured_again_and_said_and_a_folder_not_ours_is_left_alone(tmp_path):
    cache = tmp_path / "cache" / "posedual_tf"
    cache.mkdir(parents=True)
    (cache / "precision.json").write_text("{half")
    choice = precision.resolve("auto", SPEC, environ=_env(tmp_path), measure_fn=Timer(2.0, 1.0))
    assert choice.policy == "mixed_bfloat16"
    assert "unreadable" in choice.why and "not cached" in choice.why      # a folder without our list: not written
    assert (cache / "precision.json").read_text() == "{half"


def test_a_cache_entry_without_two_positive_times_is_measured_again(tmp_path):
    """An entry edited or cut short (a string, a zero, a missing precision) is measured again, and said;
    a measurement that returns such times trains in float32."""
    env = _env(tmp_path)
    precision.resolve("auto", SPEC, environ=env, measure_fn=Timer(2.0, 1.0))
    path = tmp_path / "cache" / "posedual_tf" / "precision.json"
    for broken in ({"none": "fast", "mixed_bfloat16": 1.0}, {"none": 0, "mixed_bfloat16": 1.0}, {"none": 1.0}):
        entries = json.loads(path.read_text())
        path.write_text(json.dumps({key: broken for key in entries}))
        timer = Timer(1.0, 2.0)
        choice = precision.resolve("auto", SPEC, environ=env, measure_fn=timer)
        assert (timer.calls, choice.cached, choice.policy) == (1, False, "none")
        assert "holds no two positive times; measured again" in choice.why
    zero = precision.resolve("auto", {**SPEC, "batch": 3}, environ=env, measure_fn=Timer(0.0, 1.0))
    assert zero.policy == "none" and "measurement failed (no two positive times)" in zero.why


def test_what_keeps_auto_from_measuring(tmp_path):
    def refuse(spec):
        raise AssertionError("measured")

    env = _env(tmp_path)
    kept = precision.resolve("auto", SPEC, resumed="mixed_bfloat16", environ=env, measure_fn=refuse)
    assert (kept.policy, kept.why) == ("mixed_bfloat16", "the precision of the run it resumes")
    assert precision.resolve("auto", SPEC, cluster_tasks=2, environ=env, measure_fn=refuse).policy == "none"
    capped = precision.resolve("auto", SPEC, environ={**env, "ONEDNN_MAX_CPU_ISA": "AVX2"}, measure_fn=refuse)
    assert capped.policy == "none" and "AVX2" in capped.why
    for forced in ("none", "mixed_bfloat16"):
        chosen = precision.resolve("auto", SPEC, environ={**env, precision.OVERRIDE: forced}, measure_fn=refuse)
        assert chosen.policy == forced and precision.OVERRIDE in chosen.why
    assert precision.resolve("mixed_float16", SPEC, environ=env, measure_fn=refuse).policy == "mixed_float16"
    with pytest.raises(ConfigError, match=r"^POSEDUAL_AUTO_PRECISION='fp8': expected none or mixed_bfloat16"):
        precision.resolve("auto", SPEC, environ={**env, precision.OVERRIDE: "fp8"}, measure_fn=refuse)


@pytest.mark.parametrize("capability, expected", [((8, 6), "mixed_bfloat16"), ((7, 0), "mixed_float16")])
def test_a_gpu_is_not_measured_and_its_rule_wins_over_the_cpu_override(tmp_path, monkeypatch, capability, expected):
    def refuse(spec):
        raise AssertionError("measured")

    monkeypatch.setattr(precision, "_gpu_capability", lambda: (True, capability))
    choice = precision.resolve("auto", SPEC, environ=_env(tmp_path, POSEDUAL_AUTO_PRECISION="none"), measure_fn=refuse)
    assert choice.policy == expected and "compute capability" in choice.why


def test_a_failed_measurement_trains_in_float32_and_says_why(tmp_path):
    def broken(spec):
        raise RuntimeError("could not create a primitive descriptor")

    choice = precision.resolve("auto", SPEC, environ=_env(tmp_path), measure_fn=broken)
    assert choice.policy == "none" and "could not create a primitive descriptor" in choice.why
    assert not (tmp_path / "cache" / "posedual_tf" / "precision.json").exists()


def test_the_child_process_times_both_precisions_of_the_network_it_is_given(tmp_path):
    """The measurement as a run makes it: a child process that prints both precisions' seconds for the
    network of the spec; a spec whose sizes do not fit its network fails there with the network's own
    line (so the spec, not a default, is what is timed). No timing is compared: that would be a timed test."""
    need_bfloat16()
    spec = {**SPEC, "model": {"depth": 18, "width_multiplier": 0.25}, "batch": 1}
    seconds = precision._measure_elsewhere(spec)
    assert set(seconds) == {"none", "mixed_bfloat16"} and all(s > 0 for s in seconds.values())
    with pytest.raises(RuntimeError, match=r"data\.heatmap_size: the network outputs 16x24 for image_size"):
        precision._measure_elsewhere({**spec, "heatmap_size": [8, 12]})


def test_a_run_on_auto_says_records_and_keeps_its_choice_when_resumed(tmp_path, monkeypatch, capsys):
    """A demo run with auto (here answered by the override) prints the choice, trains in it (config.yaml,
    train_result.json, TensorBoard's config text); resumed with auto while the machine would now answer
    otherwise, it keeps the precision it started with."""
    import tensorflow as tf

    need_bfloat16()
    sets = [s.removeprefix("--set=") for s in SMALL_DEMO]
    cfg = config.load("demo_sup", [f"workdir={tmp_path / 'run'}", *sets, "train.epochs=1", "train.val_interval=1"])
    assert cfg.train.mixed_precision == "auto"              # the demo configs' setting
    assert config.load("coco1k_dual").train.mixed_precision == "none"       # the paper configs': as the references
    demo.prepare_data(cfg)
    monkeypatch.setenv(precision.OVERRIDE, "mixed_bfloat16")
    result = training.run(cfg, progress="none")
    printed = capsys.readouterr().out
    assert "train.mixed_precision=auto: mixed_bfloat16\n  (POSEDUAL_AUTO_PRECISION, not measured)" in printed
    assert result["precision"]["policy"] == "mixed_bfloat16" and result["precision"]["setting"] == "auto"
    with open(tmp_path / "run" / "config.yaml") as f:
        assert yaml.safe_load(f)["train"]["mixed_precision"] == "mixed_bfloat16"
    texts = []
    for root, _, names in os.walk(tmp_path / "run" / monitoring.TB_FOLDER):
        for name in names:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                texts += [v.tensor.string_val[0].decode() for v in event.summary.value if v.tag.startswith("config")]
    assert any("# train.mixed_precision=auto: mixed_bfloat16" in t and "mixed_precision: mixed_bfloat16" in t
               for t in texts)
    monkeypatch.setenv(precision.OVERRIDE, "none")
    resumed = training.run(config.load("demo_sup", [f"workdir={tmp_path / 'run'}", *sets, "train.epochs=2",
                                                    "train.val_interval=1"]), progress="none")
    assert resumed["precision"]["policy"] == "mixed_bfloat16"
    assert resumed["precision"]["why"] == "the precision of the run it resumes"
    assert "resumed from" in capsys.readouterr().out
