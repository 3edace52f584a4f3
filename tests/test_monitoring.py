"""What a researcher reads: the event files of a short demo run (names, descriptions, steps, the custom
scalars layout, config, hparams, pair grids) and its console at 80 columns through a pseudo-terminal."""
from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import monitoring
from tests.conftest import SMALL_DEMO, run_in_pty


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A short demo run through an 80-column terminal, from the folder that holds its workdir."""
    folder = tmp_path_factory.mktemp("monitoring")
    status, lines = run_in_pty([sys.executable, "-m", "posedual_tf.train", "--config", "demo_dual",
                                "--set=workdir=demo", *SMALL_DEMO, "--set=train.val_interval=1"], cwd=folder)
    out = "\n".join(lines)
    assert status == 0, out[-3000:]
    return folder / "demo", out


def _events(workdir, head: str = ""):
    """(step, value) of the run's events (named after the config), or of one head's run inside it."""
    folder = workdir / "tb" / "demo_dual" / head
    files = list(folder.glob("events.out.tfevents.*"))
    assert len(files) == 1, files                      # one run, named after the config; one per head
    out = []
    for event in tf.compat.v1.train.summary_iterator(str(files[0])):
        for value in event.summary.value:
            out.append((event.step, value))
    return out


def test_every_scalar_has_a_name_a_description_and_the_global_step(demo_run):
    workdir, _ = demo_run
    result = json.loads((workdir / "train_result.json").read_text())
    final, per_epoch = result["final_step"], result["steps_per_epoch"]
    scalars: dict[str, dict] = {}
    # the run's own scalars, and each head's (net1, net2, ensemble) in a run of its own under the same
    # tags: TensorBoard draws them as lines of their own colours in one chart, named in its legend
    for head in ("", "net1", "net2", "ensemble"):
        for step, v in _events(workdir, head):
            if v.metadata.plugin_data.plugin_name == "scalars" or v.HasField("simple_value"):
                entry = scalars.setdefault(f"{head}:{v.tag}", {"steps": [], "description": ""})
                entry["steps"].append(step)
                entry["description"] = entry["description"] or v.metadata.summary_description
    assert scalars
    undescribed = [t for t, e in scalars.items() if len(e["description"]) < 20]
    assert not undescribed, undescribed
    for name in (":train/loss_supervised", ":train/loss_consistency", ":train/learning_rate",
                 ":collapse/low_peak_threshold", "net1:collapse/peak_height", "net2:collapse/low_peak_fraction",
                 "net1:accuracy/val", "net2:accuracy/val", "ensemble:accuracy/val", "net2:accuracy/unlabelled",
                 "net1:val/AP"):
        assert name in scalars, (name, sorted(scalars))
    assert not [t for t in scalars if re.search(r"net\d|ensemble", t.split(":")[1])]     # no head in a tag
    assert "ensemble:collapse/peak_height" not in scalars                           # it trains no network
    assert "near 1" in scalars["net1:collapse/low_peak_fraction"]["description"]
    # everything on the global step: each epoch's validation at that epoch's last step, not at "epoch N"
    assert scalars["net1:accuracy/val"]["steps"] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert final == 3 * per_epoch
    assert all(0 <= s <= final for e in scalars.values() for s in e["steps"])
    assert 1 in scalars[":train/loss"]["steps"]


def test_layout_config_and_hparams_are_written_at_the_start(demo_run):
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    workdir, _ = demo_run
    by_plugin: dict[str, list] = {}
    for step, v in _events(workdir):
        by_plugin.setdefault(v.metadata.plugin_data.plugin_name, []).append((step, v))
    layout = layout_pb2.Layout()
    layout.ParseFromString(tf.make_ndarray(by_plugin["custom_scalars"][0][1].tensor).item())
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    ap = next(tags for title, tags in charts.items() if title.startswith("AP (PCKh for MPII) on data.val"))
    assert any(re.search(t, "accuracy/val") for t in ap) and not any(re.search(t, "accuracy/unlabelled") for t in ap)
    assert any(re.search(t, "collapse/low_peak_threshold") for tags in charts.values() for t in tags)
    assert any(re.search(t, "train/loss_consistency") for tags in charts.values() for t in tags)
    text = [tf.make_ndarray(v.tensor).item().decode() for _, v in by_plugin["text"] if v.tag.startswith("config")]
    assert text and "method:" in text[0] and "name: dual" in text[0]
    hparams, metrics = {}, []
    for _, v in by_plugin["hparams"]:
        data = plugin_data_pb2.HParamsPluginData()
        data.ParseFromString(v.metadata.plugin_data.content)
        if data.HasField("session_start_info"):
            hparams = {k: (h.string_value or h.number_value) for k, h in data.session_start_info.hparams.items()}
        if data.HasField("experiment"):
            metrics = [(m.name.group, m.name.tag) for m in data.experiment.metric_infos]
    assert hparams["method"] == "dual" and hparams["seed"] == "1314" and hparams["paths"] == "A60"
    # the labelled people the run trained on: a real number (the demo's labelled records hold them all)
    labelled = json.loads((workdir / "data" / "records" / "train.json").read_text())["num_instances"]
    assert hparams["labelled"] == labelled > 0
    assert sorted(hparams) == ["labelled", "method", "paths", "seed"]
    assert metrics == [("net1", "accuracy/val"), ("net2", "accuracy/val"), ("ensemble", "accuracy/val")]


def test_pair_grids_are_large_side_by_side_and_coloured(demo_run):
    workdir, _ = demo_run
    images = [(step, v) for step, v in _events(workdir) if v.tag.startswith("pairs/")]
    assert {v.tag for _, v in images} == {"pairs/net1_A60", "pairs/net2_A60"} or \
        {v.tag for _, v in images} == {"pairs/net1_JC", "pairs/net2_JC"}, {v.tag for _, v in images}
    from posedual_tf import config

    w, h = config.load("demo_dual").data.image_size
    _, value = images[0]
    width, height, png = tf.make_ndarray(value.tensor)[:3]
    assert (int(width), int(height)) == (4 * 3 * w, 24 + 4 * 3 * h)     # 4 panels x 3, titles, 4 people
    grid = tf.io.decode_png(png).numpy()
    # each column's title: white text on the dark strip above it
    for col in range(4):
        strip = grid[:24, col * 3 * w:(col + 1) * 3 * w]
        assert (strip.min(-1) > 200).sum() > 20, col
    panel = grid[24: 24 + 3 * h, : 3 * w]
    # the skeleton is drawn in the side colours (RGB in the summary)
    left = np.array(monitoring.drawing.LEFT[::-1])
    assert (np.abs(panel.astype(int) - left).sum(-1) == 0).sum() > 10


def test_console_fits_80_columns_and_has_no_tensorflow_warnings(demo_run):
    """Through a pseudo-terminal of 80 columns: no line is longer (data preparation, training, the summary,
    the export), and no warning or error line of TensorFlow/Keras anywhere (three validations of two sets
    each: no retracing warning)."""
    _, out = demo_run
    segments = [s for s in re.split(r"[\r\n]+", out)]
    assert max(len(s) for s in segments) <= 80, max(segments, key=len)
    start = next(i for i, s in enumerate(segments) if s.startswith("epoch 1/"))
    end = next(i for i, s in enumerate(segments) if s.startswith("workdir: "))
    training = segments[start:end]
    assert training
    tf_lines = [s for s in segments if re.match(r"^[WE]\d{4} |^WARNING|Warning|warn", s)]
    assert not tf_lines, tf_lines
    assert any(re.match(r"epoch 3/3 step 3/3 loss [\d.e-]+ lr [\d.e+-]+ [\d.]+ it/s ETA", s) for s in training)
    print(f"console: {len(segments)} lines in all, {len(training)} during training")



def _tiny_fit(callbacks, epochs=2, initial_epoch=0, model=None, per_call=1, people=14):
    import keras

    if model is None:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", steps_per_execution=per_call)
    x = np.random.default_rng(0).normal(size=(people, 3)).astype(np.float32)
    model.fit(x, x[:, :1] * 2.0 + 1.0, batch_size=2, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=callbacks)
    return model


class _Recorder(monitoring.StepCallback):
    """Which steps on_step and on_steps_done see, and the optimizer's own step at on_steps_done."""

    def __init__(self):
        super().__init__()
        self.ends, self.done = [], []

    def on_step(self, step, logs):
        self.ends.append((step, isinstance(logs["loss"], float)))

    def on_steps_done(self, step):
        self.done.append((step, int(self.model.optimizer.iterations.numpy())))


def test_step_callbacks_know_the_global_step_across_fits_and_steps_per_execution():
    """on_step sees steps 1, 2, ... with Python logs; on_steps_done runs between steps with the weights of
    exactly that step (the optimizer agrees); a second fit (a resumed run) continues the global step; with
    2 steps per execution the callbacks see every 2nd step, and the weights are those of 1 step per call."""
    rec = _Recorder()
    model = _tiny_fit([rec])                                   # 2 epochs of 7 steps
    assert rec.ends == [(s, True) for s in range(1, 15)]
    assert rec.done == [(s, s) for s in range(1, 15)]
    rec.ends, rec.done = [], []
    _tiny_fit([rec], epochs=3, initial_epoch=2, model=model)   # resumed: steps 15-21
    assert [e[0] for e in rec.ends] == list(range(15, 22)) and [d[0] for d in rec.done] == list(range(15, 22))

    one = [w.numpy() for w in _tiny_fit([], people=16).weights]
    rec = _Recorder()
    m = _tiny_fit([rec], per_call=2, people=16)
    assert [e[0] for e in rec.ends] == list(range(2, 17, 2))                # 2 epochs of 8 steps, every 2nd
    assert rec.done == [(s, s) for s in range(2, 17, 2)]
    for a, b in zip(one, m.weights):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-6)
    assert not np.allclose(one[0], 0)
