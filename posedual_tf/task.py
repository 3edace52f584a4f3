"""The pose task: one object, built once from a Config, that owns what a run is made of.

A :class:`PoseTask` holds the heatmap codec, the record sources (each opened once, on first use, and
shared by training, the pair images and every validation) and builds the networks with their method and
optimizer (:meth:`~PoseTask.build_model`), the training input (:meth:`~PoseTask.build_inputs`) and the
validation (:meth:`~PoseTask.validate`). ``training.run`` orchestrates one; a notebook can use the same
parts on their own (the shape of TF Model Garden's ``official/vision`` tasks).

Example:
    >>> from posedual_tf.task import PoseTask
    >>> import tempfile
    >>> from posedual_tf import config, demo
    >>> workdir = tempfile.mkdtemp()
    >>> cfg = config.load("demo_dual", [f"workdir={workdir}"])
    >>> demo.prepare_data(cfg)                                       # doctest: +ELLIPSIS
    generating ...
    >>> task = PoseTask(cfg)
    >>> task.num_networks, task.mixed, task.epoch_steps
    (2, True, 39)
    >>> labelled, unlabelled = next(iter(task.build_inputs()))     # uint8 crops, crop-space joints
    >>> tuple(labelled["image"].shape), labelled["image"].dtype.name, tuple(labelled["joints"].shape)
    ((16, 96, 64, 3), 'uint8', (16, 24, 2))
"""
from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from posedual_tf import checkpoints, codec, distribution
from posedual_tf.config import Config
from posedual_tf.data import full_batches, pipeline, service, settings, sources
from posedual_tf.evaluation import runner
from posedual_tf.methods import PoseMethod, build_method, make_optimizer
from posedual_tf.models import builder


class MissingGroundTruthError(FileNotFoundError):
    """A set evaluated during training has no ground-truth file."""


@dataclasses.dataclass
class Model:
    """What :meth:`PoseTask.build_model` builds: the networks, the method that trains them and its optimizer."""

    nets: list
    method: PoseMethod
    optimizer: object


class PoseTask:
    """A run's codec, sources, networks, inputs and validation, built from ``cfg`` (see the module's example).

    Args:
      cfg: the run's :class:`~posedual_tf.config.Config`; the task reads it, never changes it.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.heatmaps = codec.HeatmapCodec.from_config(cfg)
        self.sources = sources.Sources(cfg.data)
        #: the training stream's values (the task's codec in them)
        self.train_data = settings.TrainDataSettings.from_config(cfg, self.heatmaps)
        self._epoch_steps: tuple[int, int] | None = None

    # ------------------------------------------------------------------ what the config asks for

    @property
    def mixed(self) -> bool:
        """Whether training batches pair labelled with unlabelled people
        (:attr:`~posedual_tf.data.settings.TrainDataSettings.mixed`)."""
        return self.train_data.mixed

    @property
    def num_networks(self) -> int:
        """Two networks for PoseDual, one otherwise."""
        return builder.num_networks(self.cfg)

    @property
    def head_names(self) -> list[str]:
        """The evaluated heads: ``net1`` (and ``net2``, ``ensemble`` for two networks)."""
        return ["net1"] if self.num_networks == 1 else ["net1", "net2", "ensemble"]

    @property
    def labelled_ids(self) -> list[int]:
        """The union joint ids the labelled set annotates."""
        return list(self.sources.labelled.joint_set.to_union)

    @property
    def epoch_steps(self) -> int:
        """Optimizer steps per epoch (``train.steps_per_epoch``, else the reference epoch)."""
        return self._steps()[0]

    def _steps(self) -> tuple[int, int]:
        if self._epoch_steps is None:
            self._epoch_steps = pipeline.epoch_steps(self.train_data, self.sources)
        return self._epoch_steps

    def streams(self) -> int:
        """People streams per training batch: 2 (labelled + unlabelled) when mixed, else 1."""
        return 2 if self.mixed else 1

    # ------------------------------------------------------------------ checks before any training

    def check(self) -> None:
        """What a run needs before its first step, each a one-line error: the training sources open,
        every set evaluated during training has its ground truth, and ``train.steps_per_execution``
        divides an epoch; first, the config's settings agree with each other (an assignment checks its own
        key only: ``cfg.data.image_size = ...`` may wait for ``cfg.data.heatmap_size``)."""
        from posedual_tf import config

        config.check(self.cfg)
        self.sources.labelled                       # noqa: B018 (opens it: a missing source fails here)
        for split in ("val", "unlabelled_eval"):
            ds = getattr(self.cfg.data, split)
            if ds.records and not os.path.exists(ds.annotations):
                raise MissingGroundTruthError(f"data.{split}.annotations: ground-truth file not found: "
                                              f"{ds.annotations!r} (needed to evaluate data.{split}.records "
                                              "during training)")
        k, steps = self.cfg.train.steps_per_execution, self.epoch_steps
        if steps % k:
            from posedual_tf.config import ConfigError

            raise ConfigError(f"train.steps_per_execution={k}: an epoch is {steps} steps, not a multiple of it "
                              f"(Keras would run past the epoch's end); set train.steps_per_epoch to a multiple, "
                              f"or train.steps_per_execution to a divisor of {steps}")

    # ------------------------------------------------------------------ model, inputs, validation

    def build_model(self, strategy: tf.distribute.Strategy | None = None, initial_weights: bool = True,
                    steps_per_epoch: int | None = None, labelled_ids=None) -> Model:
        """Networks (from ``model.pretrained`` unless ``initial_weights`` is False: a resumed run restores
        every weight from its checkpoint), the compiled method and its optimiser, under ``strategy``.
        ``steps_per_epoch``/``labelled_ids`` default to the task's (they read the records)."""
        cfg = self.cfg
        strategy = strategy or tf.distribute.get_strategy()
        steps = steps_per_epoch or self.epoch_steps
        ids = self.labelled_ids if labelled_ids is None else list(labelled_ids)
        with strategy.scope():
            nets = builder.build_networks(cfg)
            names = ", ".join(net.name for net in nets)
            path = checkpoints.check_pretrained(cfg) if initial_weights else None
            if not initial_weights:
                print(f"resuming: {names} take every weight from the checkpoint (model.pretrained not read)")
            elif path is None:
                print(f"model.pretrained: none: {names} start from random weights")
            else:
                print(f"initial weights of {names}: {checkpoints.load_nets(nets, path, cfg.model.backbone)}")
            method = build_method(cfg, nets, ids, heatmaps=self.heatmaps)
            optimizer = make_optimizer(cfg, steps)
            optimizer.build(method.trainable_variables)
            jit = distribution.resolve_jit(cfg.train.jit_compile, strategy, cfg.train.deterministic)
            method.compile(optimizer=optimizer, steps_per_execution=cfg.train.steps_per_execution, jit_compile=jit)
        return Model(nets, method, optimizer)

    def build_inputs(self, strategy: tf.distribute.Strategy | None = None, counter=None, start_step: int = 0,
                     device: str | None = None, full: bool = False):
        """The endless training stream from ``start_step`` on (:func:`pipeline.train_dataset`); under several
        replicas every input pipeline takes its own positions of the same epoch orders.

        The next batches wait on the device: a multi-replica strategy's distributed datasets copy them to
        every replica's device ahead of the step, and one replica's stream is prefetched to ``device``
        (default: the first GPU, if any), so the step never waits for the host-to-device copy.

        ``full``: every batch of one replica's stream is filled to ``train.batch_size`` places with a
        ``mask`` (:mod:`posedual_tf.data.full_batches`), so a compiled step keeps one shape through an
        epoch's short last batch; several replicas' batches are always full.
        """
        strategy = strategy or tf.distribute.get_strategy()
        if self.cfg.train.data_service:
            ds = self._served_inputs(strategy, counter, start_step)
        elif strategy.num_replicas_in_sync > 1:
            return strategy.distribute_datasets_from_function(
                lambda ctx: pipeline.train_dataset(self.train_data, self.sources, input_context=ctx, counter=counter,
                                                   start_step=start_step))
        else:
            ds = pipeline.train_dataset(self.train_data, self.sources, counter=counter, start_step=start_step)
        if not isinstance(ds, tf.data.Dataset):
            return ds
        if full:
            ds = full_batches.filled(ds, self.cfg.train.batch_size)
        gpus = tf.config.list_logical_devices("GPU")
        device = device or (gpus[0].name if gpus else None)
        return ds.apply(tf.data.experimental.prefetch_to_device(device, buffer_size=2)) if device else ds

    def _served_inputs(self, strategy: tf.distribute.Strategy, counter, start_step: int):
        """The training stream made by the tf.data service at ``train.data_service`` (global batches; a
        strategy with several replicas on this host splits each one)."""
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ValueError("train.data_service: one trainer process per service for now; several training "
                             "workers (train.strategy multi_worker) read their own local pipelines")
        steps = pipeline.step_batches(self.train_data, self.sources, start_step=start_step,
                                      replicas=strategy.num_replicas_in_sync)
        ds = service.served(steps, self.cfg.train.data_service, start_step, counter,
                            self.cfg.train.peer_timeout_s)
        return strategy.experimental_distribute_dataset(ds) if strategy.num_replicas_in_sync > 1 else ds

    def pair_images(self, n: int = 4) -> dict | None:
        """The first ``n`` unlabelled people (fixed, unshuffled; normalised as the step sees them) for the
        easy/hard image summaries; None when the run has no unlabelled stream."""
        if not self.mixed:
            return None
        maker = pipeline.SampleMaker(self.cfg.data, self.heatmaps)
        parse = pipeline.unlabelled_parser(maker, self.cfg.method, self.sources.labelled.joint_set.union_mask())
        ds = tf.data.Dataset.zip((sources.instances(self.sources.unlabelled).take(n), tf.data.Dataset.range(n)))
        batch = next(iter(pipeline.batch_people(ds.map(parse), n)), None)
        return None if batch is None else codec.TrainingInputs.from_config(self.cfg, self.heatmaps)(batch)

    def validate(self, nets, workdir: str | None = None, split: str = "val", tag: str = "",
                 progress: bool = False) -> dict:
        """Metrics of every head on ``data.<split>`` (:func:`runner.evaluate`), reading the task's open source."""
        return runner.evaluate(self.cfg, nets, workdir=workdir, progress=progress, tag=tag, split=split,
                               source=self.sources[split], heatmaps=self.heatmaps)

