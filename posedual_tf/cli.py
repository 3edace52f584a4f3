"""Flags and helpers shared by the absl command lines (train, evaluate, export, predict, convert_torch)."""
from __future__ import annotations

import functools
import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_bool("debug", False, "on an error, show the whole traceback instead of one line")


def guarded(main):
    """``main`` for ``app.run``: any error ends the command with one line (``error: ...``, exit 1);
    ``--debug`` shows the traceback instead."""

    @functools.wraps(main)
    def run(argv):
        try:
            return main(argv)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - the one place that turns every error into one line
            if FLAGS.is_parsed() and FLAGS.debug:
                raise
            sys.exit(f"error: {one_line(e)}")

    return run


def one_line(e: BaseException) -> str:
    """A readable single line for an exception: OSErrors as 'path: reason', others their first line."""
    if isinstance(e, OSError) and e.strerror:
        where = e.filename or ""
        return f"{where}: {e.strerror}" if where else e.strerror
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    known = type(e).__module__.startswith(("posedual_tf", "tfrecords_tools")) or isinstance(e, (ValueError, KeyError))
    return first if known and first else f"{type(e).__name__}: {first} (run with --debug for the traceback)"


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
