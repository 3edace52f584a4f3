"""Build the configured pose network(s).

Example:
    >>> from posedual_tf.models.builder import build_networks
    >>> import numpy as np
    >>> from posedual_tf import config
    >>> nets = build_networks(config.load("demo_dual"))            # 1 network, or 2 for PoseDual
    >>> [net.name for net in nets], tuple(nets[0](np.zeros([1, 96, 64, 3]), training=False).shape)
    (['net1', 'net2'], (1, 24, 16, 24))
"""
from __future__ import annotations

import contextlib

import keras

from posedual_tf.config import Config
from posedual_tf.models.hrnet import pose_hrnet
from posedual_tf.models.resnet import pose_resnet


def build_network(cfg: Config, name: str | None = None) -> keras.Model:
    m, d = cfg.model, cfg.data
    shape = (d.image_size[1], d.image_size[0], 3)
    if m.backbone == "hrnet":
        model = pose_hrnet(m.hrnet_width, shape, m.num_joints, m.final_conv_kernel, m.width_multiplier, name=name)
    else:
        model = pose_resnet(m.depth, shape, m.num_joints, m.deconv_filters, m.deconv_kernels,
                            m.final_conv_kernel, m.width_multiplier, caffe=m.style == "caffe", name=name)
    expected = (d.heatmap_size[1], d.heatmap_size[0])
    if tuple(model.output_shape[1:3]) != expected:
        raise ValueError(f"data.heatmap_size: the network outputs {model.output_shape[2]}x{model.output_shape[1]} "
                         f"for image_size {d.image_size}, expected [w, h] = {d.heatmap_size}")
    return model


def num_networks(cfg: Config) -> int:
    """How many networks a config trains: two for PoseDual, one otherwise."""
    return 2 if cfg.method.name == "dual" else 1


@contextlib.contextmanager
def precision(policy: str):
    """Keras' global dtype policy is ``policy`` (``train.mixed_precision``; ``none`` = float32) inside the
    block and what it was before after it: layers take their dtypes when they are built.

    Example:
        >>> import keras
        >>> from posedual_tf.models.builder import precision
        >>> with precision("mixed_bfloat16"):
        ...     inside = keras.mixed_precision.global_policy().name
        >>> inside, keras.mixed_precision.global_policy().name
        ('mixed_bfloat16', 'float32')
    """
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def build_networks(cfg: Config, policy: str | None = None) -> list[keras.Model]:
    """One network (supervised, cons) or two (dual: ``net1``, ``net2``); ``policy``: built under that
    dtype policy (:func:`precision`), else under the current one."""
    if policy is not None:
        with precision(policy):
            return build_networks(cfg)
    return [build_network(cfg, name=f"net{i + 1}") for i in range(num_networks(cfg))]
