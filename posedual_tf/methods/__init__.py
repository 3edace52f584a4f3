"""Training methods: :class:`SupervisedPose`, :class:`PoseCons`, :class:`PoseDual`, and :func:`build_method`."""
from __future__ import annotations

from posedual_tf import codec
from posedual_tf.config import Config
from posedual_tf.data import view_paths
from posedual_tf.methods.base import PoseMethod, joints_mse
from posedual_tf.methods.settings import StepSettings
from posedual_tf.methods.optimizer import TorchAdam, make_optimizer
from posedual_tf.methods.cons import PoseCons
from posedual_tf.methods.dual import PoseDual
from posedual_tf.methods.supervised import SupervisedPose


def build_method(cfg: Config, nets, labelled_ids=None, views=None, heatmaps=None) -> PoseMethod:
    """The method of ``method.name`` training ``nets``; ``views``: the hard views' settings
    (:class:`~posedual_tf.data.view_paths.ViewSettings`), ``heatmaps``: the run's
    :class:`~posedual_tf.codec.HeatmapCodec` (each made from ``cfg`` when not given)."""
    cls = {"supervised": SupervisedPose, "cons": PoseCons, "dual": PoseDual}[cfg.method.name]
    settings = StepSettings.from_config(cfg)
    prepare = codec.TrainingInputs.from_config(cfg, heatmaps)
    if cls is SupervisedPose:
        return cls(settings, nets, prepare)
    views = views or view_paths.ViewSettings.from_config(cfg, labelled_ids, prepare.heatmaps)
    return cls(settings, nets, prepare, views)


__all__ = ["PoseMethod", "SupervisedPose", "PoseCons", "PoseDual", "build_method", "joints_mse", "make_optimizer", "TorchAdam",
           "StepSettings"]
