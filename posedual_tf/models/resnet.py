"""SimpleBaseline: ResNet-18..152 backbone + 3 deconvolutions + a final conv to the joints.

Layer for layer the reference ``PoseResNet`` (reference lib/models/pose_resnet.py), channels-last.

Example:
    >>> from posedual_tf.models.resnet import pose_resnet
    >>> model = pose_resnet(18, input_shape=(256, 192, 3), num_joints=24)
    >>> model.output_shape
    (None, 64, 48, 24)
"""
from __future__ import annotations

import keras
from keras import layers

from posedual_tf.models.layers import bn, channels, conv, deconv, normal_init, relu

BLOCKS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
          101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}


def basic_block(x, planes: int, stride: int, name: str, downsample: bool):
    shortcut = x
    y = relu(bn(conv(x, planes, 3, stride, f"{name}.conv1"), f"{name}.bn1"))
    y = bn(conv(y, planes, 3, 1, f"{name}.conv2"), f"{name}.bn2")
    if downsample:
        shortcut = bn(conv(x, planes, 1, stride, f"{name}.downsample.0", padding=0), f"{name}.downsample.1")
    return relu(layers.Add()([y, shortcut]))


def bottleneck_block(x, planes: int, stride: int, name: str, downsample: bool, caffe: bool = False,
                     expansion: int = 4):
    """torchvision v1.5 bottleneck (stride on the 3x3); ``caffe`` puts it on the first 1x1."""
    shortcut = x
    s1, s2 = (stride, 1) if caffe else (1, stride)
    y = relu(bn(conv(x, planes, 1, s1, f"{name}.conv1", padding=0), f"{name}.bn1"))
    y = relu(bn(conv(y, planes, 3, s2, f"{name}.conv2"), f"{name}.bn2"))
    y = bn(conv(y, planes * expansion, 1, 1, f"{name}.conv3", padding=0), f"{name}.bn3")
    if downsample:
        shortcut = bn(conv(x, planes * expansion, 1, stride, f"{name}.downsample.0", padding=0),
                      f"{name}.downsample.1")
    return relu(layers.Add()([y, shortcut]))


def resnet_backbone(x, depth: int, width: float = 1.0, caffe: bool = False):
    """Stem and layer1..4 of a torchvision ResNet; returns the layer4 features (stride 32)."""
    kind, counts = BLOCKS[depth]
    expansion = 1 if kind == "basic" else 4
    x = relu(bn(conv(x, channels(64, width), 7, 2, "conv1", padding=3), "bn1"))
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, 2, name="maxpool")(x)
    in_ch = channels(64, width)
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
        planes = channels(planes, width)
        stride = 1 if i == 0 else 2
        for b in range(n):
            name = f"layer{i + 1}.{b}"
            s = stride if b == 0 else 1
            down = b == 0 and (s != 1 or in_ch != planes * expansion)
            if kind == "basic":
                x = basic_block(x, planes, s, name, down)
            else:
                x = bottleneck_block(x, planes, s, name, down, caffe)
            in_ch = planes * expansion
    return x


def deconv_head(x, filters, kernels, num_joints: int, final_kernel: int = 1, width: float = 1.0):
    """The SimpleBaseline head: deconv -> BN -> ReLU per layer, then a final conv with bias (float32)."""
    for i, (f, k) in enumerate(zip(filters, kernels)):
        x = deconv(x, channels(f, width), k, f"deconv_layers.{3 * i}")
        x = relu(bn(x, f"deconv_layers.{3 * i + 1}"))
    return conv(x, num_joints, final_kernel, 1, "final_layer", padding=1 if final_kernel == 3 else 0,
                use_bias=True, init=normal_init(), dtype="float32")


def pose_resnet(depth: int = 18, input_shape=(256, 192, 3), num_joints: int = 24,
                deconv_filters=(256, 256, 256), deconv_kernels=(4, 4, 4), final_kernel: int = 1,
                width: float = 1.0, caffe: bool = False, name: str | None = None) -> keras.Model:
    """A SimpleBaseline PoseResNet: image ``[B, H, W, 3]`` -> heatmaps ``[B, H/4, W/4, J]``."""
    if depth not in BLOCKS:
        raise ValueError(f"model.depth: expected one of {sorted(BLOCKS)}, got {depth}")
    inputs = keras.Input(input_shape, name="image")
    x = resnet_backbone(inputs, depth, width, caffe)
    out = deconv_head(x, deconv_filters, deconv_kernels, num_joints, final_kernel, width)
    return keras.Model(inputs, out, name=name or f"pose_resnet{depth}")
