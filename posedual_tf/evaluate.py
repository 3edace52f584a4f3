"""Evaluate a checkpoint: ``python -m posedual_tf.evaluate --config NAME --checkpoint CKPT [--set ...]``.

``CKPT`` is a training workdir (or its ckpt/ folder), a folder of ``net*.weights.h5`` (best/,
final/, or a converted official checkpoint) or an official ``.pth`` file. Prints a table per
head (each net, and the ensemble for PoseDual) and writes results and metrics json to the
workdir.
"""
from __future__ import annotations

import os

from absl import flags

from posedual_tf import cli, files

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    cli.define_config_flags()
    flags.DEFINE_string("checkpoint", None, "training workdir, weights folder or .pth file")
    flags.DEFINE_string("output", None, "where to write results/metrics json (default: the workdir)")
    flags.adopt_module_key_flags(cli)


def main(argv):
    del argv
    cfg = cli.load_config()
    cli.required("checkpoint")
    from posedual_tf import checkpoints
    from posedual_tf.evaluation import runner

    nets, loaded = checkpoints.load_networks(cfg, FLAGS.checkpoint)
    print(f"loaded {loaded}")
    out = FLAGS.output or cfg.workdir
    metrics = runner.evaluate(cfg, nets, workdir=out)        # errors: one line (cli.guarded)
    print(runner.format_table(metrics))
    counts = metrics["_counts"]
    if counts["corrupt"]["total"]:
        print(f"warning: {counts['corrupt']['total']} of {counts['expected']} people were skipped: their records\n"
              f"  failed to parse or decode (by shard: {counts['corrupt']['by_shard']})")
    print(f"metrics: {files.shown_path(os.path.join(out, 'metrics.json'))}")


if __name__ == "__main__":
    cli.run(main, define_flags)
