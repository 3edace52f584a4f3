"""Build the configured pose network(s).

Example:
    >>> nets = build_networks(cfg)            # 1 network, or 2 for PoseDual
    >>> heatmaps = nets[0](images, training=False)
"""
from __future__ import annotations

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
    return 2 if cfg.method.name == "dual" else 1


def build_networks(cfg: Config) -> list[keras.Model]:
    """One network (supervised, cons) or two (dual: ``net1``, ``net2``)."""
    n = num_networks(cfg)
    return [build_network(cfg, name=f"net{i + 1}") for i in range(n)]
