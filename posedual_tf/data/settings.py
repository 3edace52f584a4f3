"""What the input pipelines read from the config, as values: :class:`TrainDataSettings` for the
training stream, :class:`EvalDataSettings` for evaluation crops. :mod:`posedual_tf.data.pipeline`
takes these, not the whole :class:`~posedual_tf.config.Config`.
"""
from __future__ import annotations

import dataclasses

from posedual_tf.codec import HeatmapCodec
from posedual_tf.config_schema import Config, DataConfig, MethodConfig


@dataclasses.dataclass(frozen=True)
class TrainDataSettings:
    """The training stream's settings.

    >>> from posedual_tf.data.settings import TrainDataSettings
    >>> from posedual_tf import config
    >>> s = TrainDataSettings.from_config(config.load("coco1k_dual"))
    >>> s.mixed, s.labelled_sampling, s.batch_size
    (True, 'replacement', 32)
    """

    #: The data section: sources, image and heatmap sizes, augmentation ranges, parallel calls.
    data: DataConfig
    #: The method section: which dataset copies (RandAugment, TrivialAugment, YOCO) the unlabelled people carry.
    method: MethodConfig
    #: ``train.seed``: the epoch orders and every per-person draw.
    seed: int
    #: ``train.batch_size`` (global), ``train.steps_per_epoch`` (0: the epoch set once) and
    #: ``train.replica_batch`` (several groups in a batch make every batch full).
    batch_size: int
    steps_per_epoch: int
    replica_batch: int
    #: Labelled + unlabelled batches (a consistency method with unlabelled records), else labelled only.
    mixed: bool
    #: The run's heatmap codec (crop size; the step encodes the targets with it).
    heatmaps: HeatmapCodec

    @classmethod
    def from_config(cls, cfg: Config, heatmaps: HeatmapCodec | None = None) -> "TrainDataSettings":
        """``heatmaps``: the run's codec (the config's own when not given)."""
        t = cfg.train
        return cls(data=cfg.data, method=cfg.method, seed=t.seed, batch_size=t.batch_size,
                   steps_per_epoch=t.steps_per_epoch, replica_batch=t.replica_batch,
                   mixed=cfg.method.name != "supervised" and bool(cfg.data.unlabelled.records),
                   heatmaps=heatmaps or HeatmapCodec.from_config(cfg))

    @property
    def labelled_sampling(self) -> str:
        """How the labelled people of an epoch are drawn (``data.labelled_sampling``, ``auto`` resolved:
        with replacement beside unlabelled people as the reference, a permutation otherwise)."""
        s = self.data.labelled_sampling
        if s != "auto":
            return s
        return "replacement" if self.mixed else "permutation"


@dataclasses.dataclass(frozen=True)
class EvalDataSettings:
    """The evaluation crops' settings.

    >>> from posedual_tf.data.settings import EvalDataSettings
    >>> from posedual_tf import config
    >>> EvalDataSettings.from_config(config.load("coco1k_dual")).batch_size
    32
    """

    data: DataConfig
    #: ``test.batch_size``.
    batch_size: int
    #: Detection records on ``val`` (``test.use_gt_bbox`` false): boxes scoring below
    #: ``test.image_thre`` are left out. None: ground-truth boxes, every person.
    detection_threshold: float | None
    #: The run's heatmap codec (crop size, the targets beside the crops).
    heatmaps: HeatmapCodec

    @classmethod
    def from_config(cls, cfg: Config, heatmaps: HeatmapCodec | None = None) -> "EvalDataSettings":
        """``heatmaps``: the run's codec (the config's own when not given)."""
        t = cfg.test
        return cls(data=cfg.data, batch_size=t.batch_size,
                   detection_threshold=None if t.use_gt_bbox else t.image_thre,
                   heatmaps=heatmaps or HeatmapCodec.from_config(cfg))
