"""Every function of the Python API checks every argument before any work: a wrong type is a one-line
TypeError naming the parameter, a value outside its choices a one-line ValueError (issue #41, rule 4)."""
from __future__ import annotations

import inspect

import pytest

import posedual_tf
from posedual_tf import api

#: a valid value of each parameter, by name (none of them is used: each call fails on its wrong argument first)
VALID = {"name_or_path": "demo_dual", "overrides": [], "workers": 1, "progress": "none", "checkpoint": "weights",
         "output": "out", "split": "val", "net": "1", "overwrite": False, "saved_model": "saved", "image": b"\xff\xd8",
         "boxes": [[0.0, 0.0, 10.0, 20.0]], "model": "saved", "images": b"\xff\xd8", "detector": None,
         "precision": "float32"}
#: a wrong value of each parameter's type
WRONG = {"name_or_path": 3, "overrides": "train.epochs=1", "workers": "2", "progress": 1, "checkpoint": 1.5,
         "output": ["out"], "split": None, "net": 2, "overwrite": "yes", "saved_model": 7,
         "image": 3.5, "boxes": "0 0 10 20", "cfg": "demo_dual", "model": 7, "images": 3.5, "detector": 3,
         "precision": 16}
FUNCTIONS = ["load_config", "prepare_demo_data", "fit", "evaluate_checkpoint", "build_networks", "export_saved_model",
             "export_tflite", "predict_image", "predict"]


def test_the_list_is_every_api_function():
    exported = {n for n in posedual_tf.__all__ if inspect.isfunction(getattr(posedual_tf, n))}
    assert exported | {"predict"} == set(FUNCTIONS)          # posedual_tf.predict: the callable command module
    assert callable(posedual_tf.predict) and inspect.isfunction(api.predict)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_argument_of_the_wrong_type_is_one_line_naming_it(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fn = getattr(api, name)
    params = list(inspect.signature(fn).parameters)
    valid = dict(VALID, cfg=api.load_config("demo_dual", [f"workdir={tmp_path / 'run'}"]))
    for wrong in params:
        args = {p: (WRONG[p] if p == wrong else valid[p]) for p in params}
        with pytest.raises(TypeError) as e:
            fn(**args)
        message = str(e.value)
        assert message.startswith(f"{wrong}: expected ") and "\n" not in message, (name, wrong, message)
    assert not list(tmp_path.iterdir())                 # nothing was written


@pytest.mark.parametrize("call, message", [
    (lambda cfg: api.fit(cfg, progress="fast"), r"^progress: expected one of 'bar', 'lines', 'epochs', 'none', got 'fast'$"),
    (lambda cfg: api.export_saved_model(cfg, "w", "o", net="3"),
     r"^net: expected one of 'best', '1', '2', 'ensemble', got '3'$"),
    (lambda cfg: api.export_tflite(cfg, "w", "o", precision="int8"), r"^precision: expected one of 'float32', 'float16'"),
    (lambda cfg: api.evaluate_checkpoint(cfg, "w", split="test"), r"^split: expected one of 'val', 'unlabelled_eval'"),
    (lambda cfg: api.prepare_demo_data(cfg, workers=0), r"^workers: expected an int >= 1, got 0$"),
    (lambda cfg: api.predict_image("saved", b"\xff\xd8", [1.0, 2.0, 3.0]),
     r"^boxes: expected \[\[x, y, w, h\], \.\.\.\] \(N x 4 finite numbers\), got shape \(3,\)$"),
    (lambda cfg: api.predict_image("saved", b"\xff\xd8", [[1.0, 2.0, float("nan"), 3.0]]),
     r"^boxes: .* with non-finite values$"),
])
def test_values_outside_their_choices_are_one_line(call, message, tmp_path):
    cfg = api.load_config("demo_dual", [f"workdir={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match=message):
        call(cfg)
