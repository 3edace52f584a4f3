"""Convert an official PyTorch checkpoint to Keras weights for a config's network(s).

    python -m posedual_tf.convert_torch --config coco1k_dual --checkpoint COCO1K_PoseDual.pth.tar --output DIR

Writes ``DIR/net1.weights.h5`` (and ``net2`` for PoseDual) and ``DIR/conversion.json`` (matched,
missing and unexpected keys). ``DIR`` can then be given as ``model.pretrained`` (training
initialisation) or as ``--checkpoint`` to ``evaluate`` and ``export``.
"""
from __future__ import annotations

import os

from absl import flags

from posedual_tf import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    flags.adopt_module_key_flags(cli)
    flags.DEFINE_string("config", None, "experiment name or YAML path")
    flags.DEFINE_string("checkpoint", None, ".pth / .pth.tar file (torchvision, HRNet ImageNet or reference); "
                        "default: the config's test.model_file (its official model)")
    flags.DEFINE_string("output", None, "output folder")
    flags.DEFINE_multi_string("set", [], "config override key=value")
    flags.DEFINE_bool("allow-missing", False, "keep the initialisation of layers the checkpoint lacks "
                                            "(--allow_missing works too)")


def convert(cfg, checkpoint: str, output: str, strict: bool = True) -> dict:
    """Build the config's networks, fill them from ``checkpoint`` and save them to ``output``."""
    from posedual_tf import checkpoints
    from posedual_tf.models import builder, convert as conv

    checkpoints.check_weights_folder(output, "convert_torch", "--output")
    nets = builder.build_networks(cfg)
    reports = conv.load_into(nets, checkpoint, cfg.model.backbone, strict=strict)
    checkpoints.check_finite(nets, checkpoint)
    summary = {"checkpoint": os.path.abspath(checkpoint), "config": cfg.name, "networks": {}}
    for net, rep in zip(nets, reports):
        summary["networks"][net.name] = {"file": f"{net.name}.weights.h5", "matched": len(rep.matched),
                                         "missing": rep.missing, "unexpected": rep.unexpected}
    # the whole folder at once: a new one, or an earlier conversion's (never a run's best/ or final/)
    checkpoints.save_nets(nets, output, extra={"conversion.json": summary}, tool="convert_torch")
    return summary


def official_model(cfg, checkpoint: str | None) -> str:
    """``checkpoint``, or the config's official model (``test.model_file``, relative to the current
    folder as the reference's model zoo is laid out) when it is not given: one line when neither exists."""
    if checkpoint:
        return checkpoint
    if not cfg.test.model_file:
        raise cli.UsageError(f"--checkpoint is required: config {cfg.name!r} names no official model "
                             "(test.model_file is empty)")
    if not os.path.isfile(cfg.test.model_file):
        raise cli.UsageError(f"test.model_file: {os.path.abspath(cfg.test.model_file)} not found (the official "
                             f"model of {cfg.name!r}); download it there, or give --checkpoint")
    print(f"converting {cfg.name}'s official model (test.model_file): {cfg.test.model_file}")
    return cfg.test.model_file


def main(argv):
    del argv
    from posedual_tf import config

    cli.required("config", "output")
    cfg = config.load(FLAGS.config, FLAGS.set)
    checkpoint = official_model(cfg, FLAGS.checkpoint)
    summary = convert(cfg, checkpoint, FLAGS.output, strict=not FLAGS["allow-missing"].value)
    for name, info in summary["networks"].items():
        print(f"{name}: {info['matched']} tensors matched, {len(info['missing'])} missing, "
              f"{len(info['unexpected'])} unexpected -> {os.path.join(FLAGS.output, info['file'])}")


if __name__ == "__main__":
    cli.run(main, define_flags)
