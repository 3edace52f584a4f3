"""Flags and helpers shared by the absl command lines (train, evaluate, export, predict)."""
from __future__ import annotations

import sys

from absl import flags

FLAGS = flags.FLAGS


def define_config_flags() -> None:
    flags.DEFINE_string("config", None, "experiment name (configs/NAME.yaml) or a YAML path")
    flags.DEFINE_multi_string("set", [], "override a config value: --set train.batch_size=8 (repeatable)")


def load_config():
    """The config named by --config with --set overrides; a bad one exits with a one-line error."""
    from absl import logging

    from posedual_tf import config

    logging.set_verbosity(logging.WARNING)
    if not FLAGS.config:
        sys.exit("error: --config is required (one of: " + ", ".join(config.available()) + ")")
    try:
        return config.load(FLAGS.config, FLAGS.set)
    except config.ConfigError as e:
        sys.exit(f"config error: {e}")
