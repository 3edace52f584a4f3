"""Keras layers named after the reference PyTorch keys, with PyTorch's padding and BN settings.

A Keras layer name is the PyTorch module path with ``.`` written as ``__`` (``layer1.0.conv1`` ->
``layer1__0__conv1``), so that checkpoint conversion is a name lookup
(:func:`torch_key` / :func:`keras_name`).
"""
from __future__ import annotations

import keras
from keras import layers

from posedual_tf.models import bn_groups

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


@keras.saving.register_keras_serializable(package="posedual_tf")
class PointwiseConv2D(layers.Conv2D):
    """A 1x1 ``Conv2D`` that takes its stride on a CPU by subsampling, then convolving at stride 1.

    Same weights, same outputs and gradients as ``Conv2D(filters, 1, strides, "valid")``: a 1x1 conv
    at stride s reads only every s-th row and column. Why: on AVX-512 CPUs TensorFlow 2.21's oneDNN
    backward-filter kernel of a *strided* 1x1 conv writes past its buffer when the input has fewer
    than 16 channels and the batch is odd (heap corruption: ``munmap_chunk(): invalid pointer`` or a
    segfault; docs/testing.md, "Native crashes"). On a GPU the layer is the plain strided conv.

    Example:
        >>> import numpy as np, keras
        >>> from posedual_tf.models.layers import PointwiseConv2D
        >>> x = np.arange(2 * 5 * 4 * 3, dtype="float32").reshape(2, 5, 4, 3)
        >>> a, b = PointwiseConv2D(2, 1, 2), keras.layers.Conv2D(2, 1, 2)
        >>> y = a(x); b.build(x.shape); b.set_weights(a.get_weights())
        >>> tuple(y.shape), bool(np.allclose(y, b(x)))
        ((2, 3, 2, 2), True)
    """

    def __init__(self, filters, kernel_size=1, strides=1, **kwargs):
        super().__init__(filters, kernel_size, strides, "valid", **kwargs)
        if tuple(self.kernel_size) != (1, 1):
            raise ValueError(f"PointwiseConv2D: kernel_size must be 1, got {self.kernel_size}")

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        return config

    def convolution_op(self, inputs, kernel):
        import tensorflow as tf

        sh, sw = self.strides
        if (sh, sw) == (1, 1) or tf.config.list_logical_devices("GPU"):
            return super().convolution_op(inputs, kernel)
        if self.data_format == "channels_first":
            inputs = inputs[:, :, ::sh, ::sw]
        else:
            inputs = inputs[:, ::sh, ::sw, :]
        return keras.ops.conv(inputs, kernel, strides=1, padding="valid", dilation_rate=self.dilation_rate,
                              data_format=self.data_format)


def conv(x, filters: int, kernel: int, stride: int, name: str, padding: int | None = None,
         use_bias: bool = False, init=None, dtype=None):
    """PyTorch Conv2d with zero padding ``kernel // 2`` (or ``padding``).

    Stride 1 with ``pad == kernel // 2`` is TF's 'same' (symmetric for odd kernels); strided convs
    get explicit symmetric padding and 'valid', since TF's 'same' would pad after only. An unpadded
    strided 1x1 conv is a :class:`PointwiseConv2D`.
    """
    pad = kernel // 2 if padding is None else padding
    args = dict(use_bias=use_bias, kernel_initializer=init or torch_default_init(), bias_initializer="zeros",
                name=keras_name(name), dtype=dtype)
    if stride == 1 and kernel % 2 == 1 and pad == kernel // 2:
        return layers.Conv2D(filters, kernel, 1, "same", **args)(x)
    if kernel == 1 and not pad:
        return PointwiseConv2D(filters, 1, stride, **args)(x)
    if pad:
        x = layers.ZeroPadding2D(pad, name=keras_name(name) + "_pad")(x)
    return layers.Conv2D(filters, kernel, stride, "valid", **args)(x)


@keras.saving.register_keras_serializable(package="posedual_tf")
class BatchNorm(layers.BatchNormalization):
    """BatchNormalization on TensorFlow's fused kernel, with PyTorch's running-statistics rule.

    Same weights as Keras' layer (gamma, beta, moving mean, moving variance). In training it
    normalises with the batch statistics and updates the running variance with the *unbiased*
    batch variance, as PyTorch does (Keras' own layer uses the biased one); the fused kernel and
    its fused gradient are also about 2x faster on CPU than Keras' composed ops. Under a
    :mod:`~posedual_tf.models.bn_groups` schedule one call normalises several groups separately.
    """

    def call(self, inputs, training=None, mask=None):
        import tensorflow as tf

        if mask is not None or len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.center and self.scale):
            return super().call(inputs, training=training, mask=mask)
        if training and self.trainable:
            y = bn_groups.train_batch_norm(self, inputs)
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False)
        return tf.cast(y, self.compute_dtype)


def bn(x, name: str):
    return BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=keras_name(name))(x)


def relu(x):
    return layers.ReLU()(x)


def deconv(x, filters: int, kernel: int, name: str):
    """PyTorch ConvTranspose2d(kernel, stride 2) with the reference padding rule (exact 2x).

    Kernel 4 (padding 1) is exactly TF's 'same'; kernels 3 and 2 are the full ('valid') output
    cropped as PyTorch does.
    """
    if kernel == 4:
        return layers.Conv2DTranspose(filters, 4, 2, "same", use_bias=False, kernel_initializer=normal_init(),
                                      name=keras_name(name))(x)
    pad, out_pad = {3: (1, 1), 2: (0, 0)}[kernel]
    x = layers.Conv2DTranspose(filters, kernel, 2, "valid", use_bias=False, kernel_initializer=normal_init(),
                               name=keras_name(name))(x)
    crop_end = pad - out_pad
    if pad or crop_end:
        x = layers.Cropping2D(((pad, crop_end), (pad, crop_end)), name=keras_name(name) + "_crop")(x)
    return x
