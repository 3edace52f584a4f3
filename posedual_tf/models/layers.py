"""Keras layers named after the reference PyTorch keys, with PyTorch's padding and BN settings.

A Keras layer name is the PyTorch module path with ``.`` written as ``__`` (``layer1.0.conv1`` ->
``layer1__0__conv1``), so that checkpoint conversion is a name lookup
(:func:`torch_key` / :func:`keras_name`).
"""
from __future__ import annotations

import keras
from keras import layers

BN_MOMENTUM = 0.9      # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def torch_default_init():
    """PyTorch's default conv init (kaiming_uniform with a = sqrt(5)).

    A new initializer per layer: Keras 3 fixes an unseeded initializer's seed when it is created,
    so one shared instance would give every layer of a shape (and both PoseDual nets) the same values.
    """
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def normal_init(stddev: float = 0.001):
    """N(0, stddev^2), the reference's init of the deconv head, final layer and HRNet convs."""
    return keras.initializers.RandomNormal(0.0, stddev)


def keras_name(torch_path: str) -> str:
    return torch_path.replace(".", "__")


def torch_key(keras_layer_name: str) -> str:
    return keras_layer_name.replace("__", ".")


def channels(c: int, multiplier: float) -> int:
    """Scaled channel count (the reference network at multiplier 1)."""
    return c if multiplier == 1.0 else max(1, int(round(c * multiplier)))


def conv(x, filters: int, kernel: int, stride: int, name: str, padding: int | None = None,
         use_bias: bool = False, init=None, dtype=None):
    """PyTorch Conv2d: explicit symmetric zero padding (default ``kernel // 2``), then 'valid'."""
    pad = kernel // 2 if padding is None else padding
    if pad:
        x = layers.ZeroPadding2D(pad, name=keras_name(name) + "_pad")(x)
    return layers.Conv2D(filters, kernel, stride, "valid", use_bias=use_bias,
                         kernel_initializer=init or torch_default_init(),
                         bias_initializer="zeros", name=keras_name(name), dtype=dtype)(x)


def bn(x, name: str):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=keras_name(name))(x)


def relu(x):
    return layers.ReLU()(x)


def deconv(x, filters: int, kernel: int, name: str):
    """PyTorch ConvTranspose2d(kernel, stride 2) with the reference padding rule (exact 2x)."""
    pad, out_pad = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[kernel]
    x = layers.Conv2DTranspose(filters, kernel, 2, "valid", use_bias=False, kernel_initializer=normal_init(),
                               name=keras_name(name))(x)
    crop_end = pad - out_pad
    if pad or crop_end:
        x = layers.Cropping2D(((pad, crop_end), (pad, crop_end)), name=keras_name(name) + "_crop")(x)
    return x
