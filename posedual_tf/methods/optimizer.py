"""The reference's optimiser: Adam as ``torch.optim.Adam`` computes it, and its MultiStepLR schedule.

Example (coco1k_dual's schedule: lr 1e-3, x 0.1 from epoch 20 and again from 25):
    >>> from posedual_tf.methods.optimizer import MultiStepLR, make_optimizer
    >>> from posedual_tf import config
    >>> type(make_optimizer(config.load("coco1k_dual"), steps_per_epoch=4682)).__name__
    'TorchAdam'
    >>> schedule = MultiStepLR(1e-3, [20, 25], 0.1, steps_per_epoch=4682)
    >>> [round(float(schedule(step)), 7) for step in (0, 20 * 4682 - 1, 20 * 4682, 25 * 4682)]
    [0.001, 0.001, 0.0001, 1e-05]
"""
from __future__ import annotations

import keras
from keras import ops
import tensorflow as tf

from posedual_tf.config import Config


class TorchAdam(keras.optimizers.Adam):
    """Adam with PyTorch's arithmetic: epsilon added *after* the second-moment bias correction.

    Keras computes ``m * lr * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps)``, i.e. epsilon before
    the correction; torch computes ``lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. The two
    differ where ``sqrt(v)`` is near ``eps`` (tiny gradients, early steps). ``weight_decay`` is
    decoupled (torch's AdamW): ``p *= 1 - lr * wd`` before the step.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        # convert_to_tensor, not cast: cast would round the betas through float32 first
        bias1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, variable.dtype), step)
        root2 = ops.sqrt(1 - ops.power(ops.convert_to_tensor(self.beta_2, variable.dtype), step))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        # torch's m / (sqrt(v) / root2 + eps) * lr / bias1, written as Keras writes its step (same
        # temporaries, same memory): m * (lr * root2 / bias1) / (sqrt(v) + eps * root2)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr * root2 / bias1),
                                             ops.add(ops.sqrt(v), self.epsilon * root2)))


class MultiStepLR(keras.optimizers.schedules.LearningRateSchedule):
    """lr = base * factor ** (#milestones <= epoch), epoch = step // steps_per_epoch (reference MultiStepLR)."""

    def __init__(self, base_lr: float, milestones, factor: float, steps_per_epoch: int):
        self.base_lr, self.milestones, self.factor = base_lr, list(milestones), factor
        self.steps_per_epoch = max(1, int(steps_per_epoch))

    def __call__(self, step):
        epoch = tf.cast(step, tf.int64) // self.steps_per_epoch
        passed = tf.add_n([tf.cast(epoch >= m, tf.float32) for m in self.milestones]) if self.milestones else 0.0
        return self.base_lr * tf.pow(self.factor, passed)

    def get_config(self):
        return {"base_lr": self.base_lr, "milestones": self.milestones, "factor": self.factor,
                "steps_per_epoch": self.steps_per_epoch}


def make_optimizer(cfg: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam as the reference (torch's epsilon placement, no weight decay unless ``fixes.weight_decay``),
    loss scaling for fp16."""
    t = cfg.train
    lr = MultiStepLR(t.lr, t.lr_step, t.lr_factor, steps_per_epoch)
    wd = t.weight_decay if cfg.fixes.weight_decay else None
    opt = TorchAdam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=wd)
    if t.mixed_precision == "mixed_float16":
        opt = StepCountingLossScale(opt)
    return opt


class StepCountingLossScale(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic loss scale, except that a skipped (non-finite) step still counts in ``iterations``:
    the global step stays the number of batches read, so the input position a checkpoint resumes at,
    the learning-rate epochs and the per-step draws keep their meaning when float16 overflows. (It
    extends Keras' own skip branch, ``_stateful_handle_non_finite_grads``; keras is pinned below 4, and
    tests/test_distribution.py fails if that branch changes.)"""

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        self.inner_optimizer.iterations.assign_add(1)
