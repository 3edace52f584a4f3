"""What a method's training step reads from the config, as values (:class:`StepSettings`).

The methods hold these, not the whole :class:`~posedual_tf.config.Config`; :func:`posedual_tf.methods.
build_method` makes them with :meth:`StepSettings.from_config`.
"""
from __future__ import annotations

import dataclasses

from posedual_tf.config_schema import Config, MethodConfig


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The step's settings.

    >>> from posedual_tf.methods.settings import StepSettings
    >>> from posedual_tf import config
    >>> s = StepSettings.from_config(config.load("coco1k_dual"))
    >>> s.method.name, s.batch_size, s.pass_schedule, s.teacher_bn_inference
    ('dual', 32, 'reference', False)
    """

    #: The method section: loss weights, consistency pair, paths and their options.
    method: MethodConfig
    #: ``train.seed``: with the step number and the draw group, the seed of every augmentation draw.
    seed: int
    #: ``train.batch_size`` (global) and ``train.replica_batch`` (BatchNorm and draw group; 0 = a replica's share).
    batch_size: int
    replica_batch: int
    #: ``train.shared_draws``: every group and replica draws the same augmentations.
    shared_draws: bool
    #: ``train.pass_schedule``: ``reference``, ``per_network`` or ``fused`` (same numbers, less memory).
    pass_schedule: str
    #: ``fixes.teacher_bn_inference``: teachers run BatchNorm in inference mode (docs/oddities.md).
    teacher_bn_inference: bool
    #: ``fixes.path_mean``: the consistency loss averages its paths instead of summing them.
    path_mean: bool
    #: ``test.peak_threshold``: the line below which a hard view's peak counts as low (``low_peaks_N``).
    peak_threshold: float

    @classmethod
    def from_config(cls, cfg: Config) -> "StepSettings":
        t = cfg.train
        return cls(method=cfg.method, seed=t.seed, batch_size=t.batch_size, replica_batch=t.replica_batch,
                   shared_draws=t.shared_draws, pass_schedule=t.pass_schedule,
                   teacher_bn_inference=cfg.fixes.teacher_bn_inference, path_mean=cfg.fixes.path_mean,
                   peak_threshold=cfg.test.peak_threshold)
