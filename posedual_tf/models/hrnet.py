"""HRNet-W32 / W48 pose network, as the reference ``pose_hrnet`` (reference lib/models/pose_hrnet.py: ``PoseHighResolutionNet``).

Example:
    >>> from posedual_tf.models.hrnet import pose_hrnet
    >>> model = pose_hrnet(32, input_shape=(256, 192, 3))
    >>> model.output_shape
    (None, 64, 48, 24)
"""
from __future__ import annotations

import keras
from keras import layers

from posedual_tf.models.layers import bn, channels, conv, normal_init, relu
from posedual_tf.models.resnet import basic_block, bottleneck_block

#: (blocks per branch, modules) of stages 2-4; branch channels are width * (1, 2, 4, 8).
STAGES = ((2, 1), (3, 4), (4, 3))
NUM_BLOCKS = 4


def _conv(x, filters, kernel, stride, name, padding=None):
    return conv(x, filters, kernel, stride, name, padding=padding, init=normal_init())


def _fuse(xs, chans, name, multi_scale: bool):
    outs = []
    for i in range(len(xs) if multi_scale else 1):
        terms = []
        for j, x in enumerate(xs):
            if j == i:
                terms.append(x)
            elif j > i:
                y = bn(_conv(x, chans[i], 1, 1, f"{name}.fuse_layers.{i}.{j}.0", padding=0),
                       f"{name}.fuse_layers.{i}.{j}.1")
                terms.append(layers.UpSampling2D(2 ** (j - i), interpolation="nearest")(y))
            else:
                y = x
                for k in range(i - j):
                    last = k == i - j - 1
                    y = _conv(y, chans[i] if last else chans[j], 3, 2, f"{name}.fuse_layers.{i}.{j}.{k}.0")
                    y = bn(y, f"{name}.fuse_layers.{i}.{j}.{k}.1")
                    if not last:
                        y = relu(y)
                terms.append(y)
        outs.append(relu(layers.Add()(terms)) if len(terms) > 1 else relu(terms[0]))
    return outs


def _module(xs, chans, name, multi_scale: bool):
    branches = []
    for b, x in enumerate(xs):
        for k in range(NUM_BLOCKS):
            x = basic_block(x, chans[b], 1, f"{name}.branches.{b}.{k}", downsample=False)
        branches.append(x)
    return _fuse(branches, chans, name, multi_scale)


def _transition(xs, pre, cur, name):
    out = []
    for i, c in enumerate(cur):
        if i < len(pre):
            if pre[i] != c:
                out.append(relu(bn(_conv(xs[i], c, 3, 1, f"{name}.{i}.0"), f"{name}.{i}.1")))
            else:
                out.append(xs[i])
        else:
            y = xs[-1]
            for j in range(i + 1 - len(pre)):
                oc = c if j == i - len(pre) else pre[-1]
                y = relu(bn(_conv(y, oc, 3, 2, f"{name}.{i}.{j}.0"), f"{name}.{i}.{j}.1"))
            out.append(y)
    return out


def pose_hrnet(width: int = 32, input_shape=(256, 192, 3), num_joints: int = 24, final_kernel: int = 1,
               multiplier: float = 1.0, name: str | None = None) -> keras.Model:
    """HRNet-W{width}: image ``[B, H, W, 3]`` -> heatmaps ``[B, H/4, W/4, J]``."""
    inputs = keras.Input(input_shape, name="image")
    stem = channels(64, multiplier)
    x = relu(bn(_conv(inputs, stem, 3, 2, "conv1"), "bn1"))
    x = relu(bn(_conv(x, stem, 3, 2, "conv2"), "bn2"))
    for b in range(4):
        x = bottleneck_block(x, stem, 1, f"layer1.{b}", downsample=b == 0)
    xs, pre = [x], [stem * 4]
    base = channels(width, multiplier)
    for s, (n_branches, n_modules) in enumerate(STAGES):
        cur = [base * 2 ** i for i in range(n_branches)]
        xs = _transition(xs, pre, cur, f"transition{s + 1}")
        for m in range(n_modules):
            multi = not (s == len(STAGES) - 1 and m == n_modules - 1)
            xs = _module(xs, cur, f"stage{s + 2}.{m}", multi)
        pre = cur
    out = conv(xs[0], num_joints, final_kernel, 1, "final_layer", padding=1 if final_kernel == 3 else 0,
               use_bias=True, init=normal_init(), dtype="float32")
    return keras.Model(inputs, out, name=name or f"pose_hrnet_w{width}")

