"""Train a named experiment: ``python -m posedual_tf.train --config coco1k_dual [--set k=v ...]``.

Runs in ``workdir`` (default ``runs/<name>``): TensorBoard logs in ``tb/<name>/``, checkpoints in
``ckpt/`` (re-running resumes), best and final weights, metrics json. Demo configs
(``demo_*``) first generate and convert their synthetic data, and export a SavedModel at the end.
"""
from __future__ import annotations

import contextlib
import os
import sys

from absl import flags

from posedual_tf import cli, files

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    cli.define_config_flags()
    flags.DEFINE_enum("progress", "auto", ["auto", "bar", "lines", "epochs", "none"],
                      "progress within an epoch: a bar, a line every train.log_every steps, one line per epoch, "
                      "or nothing; auto = a bar on a terminal, lines otherwise (log files)")
    flags.adopt_module_key_flags(cli)


def main(argv):
    del argv
    cfg = cli.load_config()
    from posedual_tf import demo, distribution, files, training

    # before any data work: never train from random weights by accident (a resumed run needs no file)
    checked = training.preflight(cfg)
    print(f"{cfg.name}: {cfg.description}" if cfg.description else cfg.name)
    strategy = distribution.make_strategy(cfg.train.strategy, cfg.train.peer_timeout_s)
    chief = distribution.is_chief(strategy)
    # one writer of the workdir from its first write (a demo's data preparation) to the export; a run that
    # would write nothing before training (its data given) leaves no workdir behind if it fails first
    writes = chief and (demo.is_demo(cfg) or os.path.isdir(cfg.workdir))
    with files.writing(cfg.workdir, "train", accepts=("evaluate",), setting="workdir") if writes else \
            contextlib.nullcontext():
        _train(cfg, strategy, chief, checked)


def _train(cfg, strategy, chief: bool, checked) -> None:
    """:func:`main` after its checks: data preparation, training, the report and the demo's export."""
    from posedual_tf import demo, monitoring, training
    from posedual_tf.evaluation.runner import primary

    if demo.is_demo(cfg):
        demo.prepare_data(cfg)
    progress = FLAGS.progress
    if progress == "auto":
        progress = "bar" if sys.stdout.isatty() else "lines"
    result = training.run(cfg, progress=progress, strategy=strategy, checked=checked)       # errors: one line (cli.guarded)
    if not chief:
        print(f"trained as a worker of a {result['num_replicas']}-replica cluster;\n"
              f"  its chief writes {files.shown_path(cfg.workdir)}")
        return
    if result["metrics"]:
        print(monitoring.short_table(result["metrics"], primary))
    bad = result["corrupt_records"]
    if bad["total"]:
        print(f"warning: {bad['total']} training records were skipped (failed to parse or decode);\n"
              f"  by stream {bad['by_stream']}\n  by shard {bad['by_shard']}")
    print(f"workdir: {files.shown_path(cfg.workdir)}")
    print(f"TensorBoard: tensorboard --logdir {files.shown_path(os.path.join(cfg.workdir, monitoring.TB_FOLDER))}")
    if demo.is_demo(cfg):
        demo.export_after_training(cfg)         # prints the folder and the network (posedual_tf.best_net's rule)
    print(f"done: {result['final_step']} steps, {result['seconds'] / 60:.1f} min of training; every number in\n"
          f"  {files.shown_path(os.path.join(cfg.workdir, 'train_result.json'))}")


if __name__ == "__main__":
    cli.run(main, define_flags)
