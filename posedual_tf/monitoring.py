"""What a training run shows in TensorBoard and on the console (docs/monitoring.md).

* Every scalar has a name that says what it is and a description (:func:`scalar_meaning`), and every
  scalar, validation included, is written on the global step.
* At the start: the resolved config as text, a custom-scalars layout (AP of each network and the
  ensemble on one chart, supervised against consistency loss, the collapse indicators with the 0.1
  line) and the hparams of the run (:func:`write_header`).
* :class:`PairGrid`: one image per network and path: easy view with the teacher's skeleton | hard view
  with the student's | the teacher's target heatmap | the student's heatmap, upscaled.
* :class:`ProgressLine`: step, loss, learning rate, speed and ETA in under 80 columns.

Example:
    >>> from posedual_tf.monitoring import scalar_meaning
    >>> scalar_meaning("collapse_2")[0]               # in the run of net 2 (head_meaning)
    'collapse/peak_height'
    >>> scalar_meaning("cons_JOCO")[0]
    'paths/JOCO/loss_consistency'
"""
from __future__ import annotations

import math
import re
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from posedual_tf import aug_paths, codec, drawing, joints
from posedual_tf.config import Config, dump

#: The runs' event files live in ``<workdir>/tb/<config name>``: TensorBoard names the run after the config.
TB_FOLDER = "tb"

_PEAK = ("Mean over the unlabelled people's supervised joints of the highest value of {who}'s heatmap on the "
         "hard views (the target Gaussians peak at 1). It rises while the network learns; collapse (every "
         "pixel predicted as background) drives it to 0.")
_LOW = ("Fraction of {who}'s hard-view heatmap peaks below test.peak_threshold (0.1). Near 0 is healthy; near 1 "
        "means the network predicts background everywhere: the collapse of the PoseDual paper.")

#: (pattern of a Keras log key, TensorBoard tag, description); ``{n}``/``{p}`` are the regex groups.
_TRAIN = (
    (r"loss", "train/loss", "The step's loss: method.sup_weight x supervised + method.cons_weight x consistency "
                            "(mean over the epoch so far, as the reference's AverageMeter)."),
    (r"loss_pose", "train/loss_supervised", "Supervised heatmap MSE on the labelled people, as it enters the loss "
                                            "(PoseDual: half the sum over the two networks). Mean over the epoch so far."),
    (r"loss_cons", "train/loss_consistency", "Consistency MSE between each student's hard-view heatmaps and its "
                                             "teacher's warped easy-view heatmaps, summed over networks and paths. "
                                             "Falling to 0 while the peak height falls too is collapse, not learning."),
    (r"acc", "train/accuracy_labelled", "The reference's training accuracy on labelled people: fraction of joints "
                                        "whose predicted argmax lies within 0.5 x (heatmap size / 10) of the "
                                        "target's. For logs only; validation AP is the measure."),
    (r"cons_(.+)", "paths/{0}/loss_consistency", "Consistency MSE of the hard path {0}, summed over the networks."),
    (r"collapse_(.+)", "paths/{0}/peak_height", _PEAK.format(who="the networks (mean)").replace(
        "hard views", "hard views of path {0}")),
    (r"lr", "train/learning_rate", "The optimizer's learning rate at this step (train.lr, times train.lr_factor at "
                                   "each train.lr_step epoch)."),
)

#: Descriptions of the evaluation stats (COCO/AIC, MPII), by stat name.
_EVAL = {
    "AP": "OKS AP averaged over OKS thresholds .50:.05:.95 (COCO's primary number)",
    "AP .5": "OKS AP at OKS .50", "AP .75": "OKS AP at OKS .75", "AP (M)": "OKS AP on medium people",
    "AP (L)": "OKS AP on large people", "AR": "OKS AR averaged over .50:.95", "AR .5": "OKS AR at .50",
    "AR .75": "OKS AR at .75", "AR (M)": "OKS AR on medium people", "AR (L)": "OKS AR on large people",
    "Mean": "PCKh@0.5 over all joints (MPII's primary number)",
    "peak_mean": "mean of the predicted heatmaps' peak values (near 0: collapse)",
    "peaks_below": "fraction of predicted peaks below test.peak_threshold (near 1: collapse)",
}
_SETS = {"val": "data.val", "unlabelled": "the unlabelled people scored with their ground truth (data.unlabelled_eval)"}


def scalar_meaning(key: str) -> tuple[str, str]:
    """(TensorBoard tag, description) of a training log key (``loss``, ``collapse_1``, ``cons_JC`` ...); a
    network's own (``collapse_1``) is written into that network's run (:func:`head_meaning`)."""
    own = head_meaning(key)
    if own is not None:
        return own[1:]
    for pattern, tag, description in _TRAIN:
        m = re.fullmatch(pattern, key)
        if m:
            return tag.format(*m.groups()), description.format(*m.groups())
    return f"train/{key}", f"The training log value {key!r}."


def eval_meaning(split: str, head: str, stat: str) -> tuple[str, str]:
    """(tag, description) of one evaluation stat of one head (net1, net2, ensemble) on a split; the tag
    names no head: each head writes into a run of its own (:class:`HeadWriters`)."""
    what = _EVAL.get(stat, stat)
    tag = f"{split}/{stat}"
    return tag, f"{what}; {head} on {_SETS.get(split, split)}, at this global step."


class HeadWriters:
    """One TensorBoard run per head beside the run's own: ``<tb>/<config>/net1``, ``.../net2``,
    ``.../ensemble``. A head's numbers carry the same tags in every head's run, so TensorBoard draws the
    heads of one chart in colours of their own and names them in its legend."""

    def __init__(self, run_dir: str):
        self.run_dir, self._writers = run_dir, {}

    def __call__(self, head: str):
        if head not in self._writers:
            self._writers[head] = tf.summary.create_file_writer(f"{self.run_dir}/{head}")
        return self._writers[head]

    def flush(self) -> None:
        for w in self._writers.values():
            w.flush()


#: A training log key that is one network's (``collapse_2``): its head and the tag it is written under.
_PER_NETWORK = (
    (r"collapse_(\d+)", "collapse/peak_height", _PEAK.format(who="this network")),
    (r"low_peaks_(\d+)", "collapse/low_peak_fraction", _LOW.format(who="this network")),
)


def head_meaning(key: str) -> tuple[str, str, str] | None:
    """(head, tag, description) of a log key of one network, else None."""
    for pattern, tag, description in _PER_NETWORK:
        m = re.fullmatch(pattern, key)
        if m:
            return f"net{m.group(1)}", tag, description
    return None


def write_eval(heads: HeadWriters, step: int, split: str, metrics: dict, primary) -> None:
    """Every float stat of every head at ``step`` into the head's run, and its primary number as
    ``accuracy/<split>`` (one chart, a line per head)."""
    for head, stats in metrics.items():
        if head.startswith("_"):
            continue
        with heads(head).as_default(step=step):
            for stat, value in stats.items():
                if isinstance(value, float):
                    tag, description = eval_meaning(split, head, stat)
                    tf.summary.scalar(tag, value, description=description)
            tf.summary.scalar(f"accuracy/{split}", primary(stats),
                              description=f"The primary accuracy (AP, or PCKh Mean for MPII) on "
                                          f"{_SETS.get(split, split)}: a line per head (net1, net2, ensemble: "
                                          "runs of their own).")
    heads.flush()


def short_table(metrics: dict, primary) -> str:
    """The end-of-run table in under 80 columns: per head the primary number, AP .5/.75 and AR where
    there are, and the fraction of low peaks (every stat is in train_result.json and metrics.json)."""
    heads = [h for h in metrics if not h.startswith("_")]
    if not heads:
        return ""
    first = metrics[heads[0]]
    cols = [c for c in ("AP .5", "AP .75", "AR", "peaks_below") if c in first]
    name = "AP" if "AP" in first else "PCKh"
    rows = [f"{'':<9}{name:>8}" + "".join(f"{c.replace('peaks_below', 'low peaks'):>10}" for c in cols)]
    for h in heads:
        rows.append(f"{h:<9}{primary(metrics[h]):>8.4f}" + "".join(f"{metrics[h][c]:>10.4f}" for c in cols))
    return "\n".join(rows)


# ------------------------------------------------------------------------------ the run's header

def _layout():
    from tensorboard.plugins.custom_scalar import layout_pb2

    def chart(title, *tags):
        return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=list(tags)))

    return layout_pb2.Layout(category=[
        layout_pb2.Category(title="accuracy", chart=[
            chart("AP (PCKh for MPII) on data.val: net1, net2, ensemble", r"^accuracy/val$"),
            chart("the same on the unlabelled set (its ground truth)", r"^accuracy/unlabelled$")]),
        layout_pb2.Category(title="losses", chart=[
            chart("supervised vs consistency", r"^train/loss_(supervised|consistency)$")]),
        layout_pb2.Category(title="collapse", chart=[
            chart("peak height per network (0.1 line: a low peak)", r"^collapse/peak_height$",
                  r"^collapse/low_peak_threshold$"),
            chart("fraction of low peaks per network (near 1: collapse)", r"^collapse/low_peak_fraction$"),
            chart("peak height per path (MultiAugs: several paths)", r"^paths/.*/peak_height$")]),
    ])


def hparams_of(cfg: Config, labelled_people: int) -> dict:
    """The settings a sweep compares: method, paths, the labelled people trained on (a number: a scatter
    plot's axis) and the seed (a label). Four, so that the table with its three AP columns fits a
    1920-pixel window; the run's name (the config's: its backbone) is the trial's."""
    labels = aug_paths.path_labels(aug_paths.method_paths(cfg.method)) if cfg.method.name != "supervised" else []
    return {"method": cfg.method.name, "paths": "+".join(labels) or "-", "labelled": int(labelled_people),
            "seed": str(cfg.train.seed)}


def write_header(writer, cfg: Config, heads: list[str], labelled_people: int, notes: tuple[str, ...] = ()) -> None:
    """At a run's start (step 0): the resolved config as text (``notes`` above it as comments, e.g. what
    ``train.mixed_precision=auto`` chose), the custom-scalars layout, the hparams (the run's name is the
    trial's) with each head's ``accuracy/val`` (in its own run) as the metrics."""
    from tensorboard.plugins.custom_scalar import summary as cs_summary
    from tensorboard.plugins.hparams import api as hp

    values = hparams_of(cfg, labelled_people)
    with writer.as_default(step=0):
        comments = "".join(f"# {line.strip()}\n" for n in notes for line in n.splitlines())
        tf.summary.text("config", "```yaml\n" + comments + dump(cfg) + "```",
                        description=f"The resolved config {cfg.name!r} this run trains (also config.yaml in the workdir)"
                        + (f": {cfg.description}." if cfg.description else "."))
        tf.summary.experimental.write_raw_pb(cs_summary.pb(_layout()).SerializeToString(), step=0)
        hp.hparams_config(hparams=[hp.HParam(k) for k in values],
                          metrics=[hp.Metric("accuracy/val", group=h, display_name=f"AP {h}") for h in heads])
        hp.hparams(values, trial_id=cfg.name)
    writer.flush()


# ------------------------------------------------------------------------------ callbacks

class StepCallback(keras.callbacks.Callback):
    """A callback that knows the global step without asking the device.

    * The step: the optimizer's step is read once when ``fit`` starts; after it, a batch's global step
      is that + the batches of this fit's finished epochs + its index + 1 (every batch is one optimizer
      step; a float16 step skipped for overflow is counted too). With ``train.steps_per_execution`` k,
      Keras calls the batch hooks once per k steps, with the execution's last batch: the step is right.
    * :meth:`on_step` gets the step's logs (Python numbers) after the step (every k steps).
    * :meth:`on_steps_done` runs before the next step begins and at each epoch's end: work that reads or
      saves the networks sees the weights of exactly ``step`` steps there.

    Keras on the TensorFlow backend turns the logs into numbers (a wait for the device) after every
    call of ``train_function`` whatever the callbacks are (``async_safe`` callbacks are ignored there:
    the backend is not marked thread-safe); ``train.steps_per_execution`` is the lever.
    """

    def on_train_begin(self, logs=None):
        self._base = int(self.model.optimizer.iterations.numpy())
        self._first_epoch = None
        self._per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)

    def due(self, step: int, every: int) -> bool:
        """Every ``every`` steps, and at a fresh run's first step the callbacks see (1, or k)."""
        return step % every == 0 or step == self._per_call

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
        self._epoch_start = self._base + (epoch - self._first_epoch) * self.params["steps"]

    def global_step(self, batch: int) -> int:
        """The global step after batch ``batch`` (0-based, of the current epoch)."""
        return self._epoch_start + batch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if batch:
            self.on_steps_done(self._epoch_start + batch)

    def on_train_batch_end(self, batch, logs=None):
        self.on_step(self.global_step(batch), logs)

    def on_epoch_end(self, epoch, logs=None):
        self.on_steps_done(self._epoch_start + self.params["steps"])

    def on_step(self, step: int, logs) -> None:
        """After step ``step``; ``logs`` are Python numbers."""

    def on_steps_done(self, step: int) -> None:
        """Between two steps, the networks holding the weights of ``step`` steps."""


class ScalarLogger(StepCallback):
    """Step scalars (losses, lr, accuracy, collapse indicators) with their descriptions to TensorBoard
    every N steps (and at step 1)."""

    def __init__(self, writer, every: int, peak_threshold: float, heads: HeadWriters):
        super().__init__()
        self.writer, self.every, self.threshold, self.heads = writer, max(1, every), peak_threshold, heads

    def on_step(self, step, logs):
        if not self.due(step, self.every):
            return
        lr = self.model.optimizer.learning_rate
        values = dict(logs or {}, lr=float(lr.numpy() if hasattr(lr, "numpy") else lr))
        for k, v in values.items():
            tag, description = scalar_meaning(k)
            own = head_meaning(k)             # one network's: into its run, so the networks differ in colour
            with (self.heads(own[0]) if own else self.writer).as_default(step=step):
                tf.summary.scalar(tag, float(v), description=description)
        with self.writer.as_default(step=step):
            if any(k.startswith("collapse_") for k in values):
                tf.summary.scalar("collapse/low_peak_threshold", self.threshold,
                                  description="test.peak_threshold: a heatmap peak below this line is a low peak.")


def _panel(img: np.ndarray, scale: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def heat_panel(maps: np.ndarray, size: tuple[int, int], scale: int) -> np.ndarray:
    """``[h, w, J]`` heatmaps -> their maximum over the joints as a BGR colour map of the crop's ``size``
    (W, H) times ``scale``; 0 black, 1 the top of the map."""
    import cv2

    peak = np.clip(maps.max(axis=-1), 0.0, 1.0)
    grey = cv2.resize((peak * 255).astype(np.uint8), (size[0] * scale, size[1] * scale),
                      interpolation=cv2.INTER_LINEAR)
    return cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)


class PairGrid(StepCallback):
    """Every N steps (and at step 1), one image per network and path: for each of the first unlabelled
    people a row of easy view + teacher's skeleton | hard view + student's skeleton | the teacher's target
    (warped into the hard view) | the student's heatmap, each ``scale`` times the crop. Everything runs in
    inference mode, so the summaries never touch the BatchNorm statistics."""

    def __init__(self, writer, cfg: Config, unlabelled_batch: dict | None, every: int, labelled_ids, scale: int = 3):
        super().__init__()
        self.writer, self.cfg, self.batch, self.every = writer, cfg, unlabelled_batch, max(1, every)
        self.labelled_ids, self.scale = list(labelled_ids), scale
        self.inputs = codec.InputNormaliser.from_config(cfg.data)

    def _image(self, x: np.ndarray) -> np.ndarray:
        bgr = self.inputs.to_unit_rgb(x)[..., ::-1]
        return np.ascontiguousarray((bgr * 255).astype(np.uint8))

    def _with_skeleton(self, x: np.ndarray, maps: np.ndarray) -> np.ndarray:
        coords, _ = codec.argmax_coords(maps[None])
        stride = self.model.views.stride
        kp = np.zeros((joints.NUM_UNION, 3))
        kp[:, :2] = (coords.numpy()[0] * stride + stride / 2) * self.scale
        kp[self.labelled_ids, 2] = 1                     # the joints the labelled set supervises
        panel = _panel(self._image(x), self.scale)
        drawing.draw_skeleton(panel, kp, joints.UNION, thickness=2, radius=4)
        return panel

    #: The columns' titles, written above them.
    TITLES = ("easy + teacher", "hard + student", "target (teacher)", "student heatmap")

    def titles(self, width: int) -> np.ndarray:
        """A strip of the columns' titles (BGR), each centred over its ``width``-pixel column."""
        import cv2

        font, strip = cv2.FONT_HERSHEY_SIMPLEX, np.full((24, width * len(self.TITLES), 3), 32, np.uint8)
        for i, title in enumerate(self.TITLES):
            size = 0.5
            while size > 0.25 and cv2.getTextSize(title, font, size, 1)[0][0] > width - 6:
                size -= 0.05
            (w, h), _ = cv2.getTextSize(title, font, size, 1)
            cv2.putText(strip, title, (i * width + (width - w) // 2, 12 + h // 2), font, size, (255, 255, 255), 1,
                        cv2.LINE_AA)
        return strip

    def grid(self, easy, teacher, hard, target, student) -> np.ndarray:
        """The ``[24 + rows x H, 4 x W, 3]`` RGB grid of the batch's first people under the columns' titles
        (numpy in, numpy out)."""
        size = tuple(self.cfg.data.image_size)
        rows = [self.titles(size[0] * self.scale)]
        for b in range(easy.shape[0]):
            rows.append(np.concatenate([self._with_skeleton(easy[b], teacher[b]),
                                        self._with_skeleton(hard[b], student[b]),
                                        heat_panel(target[b], size, self.scale),
                                        heat_panel(student[b], size, self.scale)], axis=1))
        return np.concatenate(rows, axis=0)[..., ::-1]

    def on_steps_done(self, step):
        if self.batch is None or not self.due(step, self.every):
            return
        from posedual_tf.data import augment, view_paths

        m = self.model
        rng = augment.StatelessRng(tf.constant([7, 7], tf.int64))
        easy = self.batch["image"]
        predict = lambda net, x: tf.cast(net(x, training=False), tf.float32)   # inference mode: BN untouched
        teachers = [predict(n, easy) for n in m.nets]
        partners = [m.partner(i) for i in range(len(m.nets))]
        cut_from = [teachers[p] for p in partners]
        labels = aug_paths.path_labels(aug_paths.method_paths(self.cfg.method))
        if self.cfg.method.consistency_pair == "easy_hard":
            views, warped = view_paths.build_views(m.views, rng, self.batch, cut_from, teachers)
            shown = [easy] * len(m.nets)
            targets = [warped[p] for p in partners]
        else:
            pair = view_paths.build_pair_views(m.views, rng, self.batch, cut_from)
            shown, views = pair.teacher, [pair.student]
            targets = [pair.target(predict(m.nets[p], pair.teacher[n])) for n, p in enumerate(partners)]
            labels = labels[:1]
        with self.writer.as_default(step=step):
            for n, net in enumerate(m.nets):
                teacher_maps = predict(m.nets[partners[n]], shown[n]).numpy()
                for label, path_views in zip(labels, views):
                    view = path_views[n]
                    grid = self.grid(shown[n].numpy(), teacher_maps, view.numpy(), targets[n].numpy(),
                                     predict(net, view).numpy())
                    tf.summary.image(
                        f"pairs/net{n + 1}_{label}", grid[None].astype(np.float32) / 255.0, max_outputs=1,
                        description=f"Net {n + 1}, path {label}: per person, the easy view with its teacher's "
                                    "skeleton | the hard view with net's own skeleton | the teacher's target "
                                    "(max over joints, in the hard view's frame) | net's heatmap. Left limbs "
                                    "blue, right orange. Inference mode.")


class ProgressLine(StepCallback):
    """One progress line of at most 79 characters: epoch, step, loss, learning rate, speed, ETA.
    ``in_place`` (a terminal): rewritten in place; otherwise a line every ``every`` steps and at the
    epoch's end (log files). Every metric goes to TensorBoard and the workdir's train_log.txt."""

    def __init__(self, steps: int, epochs: int, every: int, in_place: bool = False, stream=None,
                 refresh_s: float = 0.25):
        super().__init__()
        self.steps, self.epochs, self.every = steps, epochs, max(1, every)
        self.stream = stream or sys.stdout
        self.tty, self.refresh_s = in_place, refresh_s
        self.epoch, self.t0, self.done0, self.shown = 0, time.time(), None, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.epoch = epoch

    def line(self, step_in_epoch: int, global_step: int, logs: dict) -> str:
        now = time.time()
        if self.done0 is None:
            self.done0, self.t0 = global_step, now
        rate = (global_step - self.done0) / max(now - self.t0, 1e-9)
        left = (self.epochs * self.steps - global_step) / rate if rate > 0 else math.nan
        eta = "--:--:--" if not math.isfinite(left) else time.strftime("%H:%M:%S", time.gmtime(min(left, 359999)))
        lr = self.model.optimizer.learning_rate
        lr = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        loss = float((logs or {}).get("loss", math.nan))
        text = (f"epoch {self.epoch + 1}/{self.epochs} step {step_in_epoch}/{self.steps} loss {loss:.4g} "
                f"lr {lr:.1e} {rate:.2f} it/s ETA {eta}")
        return text[:79]

    def on_step(self, step, logs):
        within = step - self.epoch * self.steps
        last = within >= self.steps
        if self.tty:        # rewritten at most every refresh_s (the learning rate is read only then)
            if last or time.time() - self.shown >= self.refresh_s or self.done0 is None:
                self.stream.write("\r" + self.line(within, step, logs).ljust(79) + ("\n" if last else ""))
                self.stream.flush()
                self.shown = time.time()
        elif within % self.every == 0 or last:
            print(self.line(within, step, logs), file=self.stream, flush=True)
