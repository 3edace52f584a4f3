"""The converters' shared command line: the common flags (``--images``, ``--output``, ``--num-shards``,
``--workers``) and the whole command of a converter that reads one annotation file (aic, mpii). Each
tool runs on :func:`posedual_tf.cli.run`, so flags are defined only when it runs.
"""
from __future__ import annotations

import os

from posedual_tf.conversion.writer import check_prefix, report, write_dataset
from posedual_tf.joints import JointSet


def define_converter_flags() -> None:
    """``--images``, ``--output``, ``--num-shards``, ``--workers``: the flags of every converter (defined
    when it runs, through ``posedual_tf.cli.run``)."""
    from absl import flags

    flags.DEFINE_string("images", None, "folder holding the image files")
    flags.DEFINE_string("output", None, "output prefix, e.g. data/coco/train2017")
    flags.DEFINE_integer("num-shards", 0, "shards (0 = about 256 MB each)", lower_bound=0)
    flags.DEFINE_integer("workers", min(8, os.cpu_count() or 1), "processes reading and checking images",
                         lower_bound=1)


def converter_flags() -> tuple[str, str, int, int]:
    """``(images, output, num_shards, workers)`` of a converter's command line, ``--images`` and ``--output``
    required (one line), the prefix checked."""
    from absl import flags

    from posedual_tf import cli

    f = flags.FLAGS
    cli.required("images", "output")
    check_prefix(f.output)
    return f.images, f.output, f["num-shards"].value, f.workers


def single_file_tool(doc: str, annotations_help: str, build_entries, joint_set: JointSet, source: str):
    """``(main, define_flags)`` of a converter that reads one annotation file (aic, mpii), for
    ``posedual_tf.cli.run``; the tool's ``--help`` lists the flags its module adopts
    (``flags.adopt_module_key_flags(writer)``, called from that module)."""

    def define_flags() -> None:
        from absl import flags

        flags.DEFINE_string("annotations", None, annotations_help)
        define_converter_flags()

    def main(argv) -> None:
        del argv
        from absl import flags

        from posedual_tf import cli

        cli.required("annotations")
        images, output, num_shards, workers = converter_flags()
        annotations = flags.FLAGS.annotations
        entries, skipped = build_entries(annotations, images)
        manifest = write_dataset(entries, output, joint_set=joint_set, sources=[annotations], skipped=skipped,
                                 num_shards=num_shards, workers=workers, extra={"source": source})
        report(manifest, output)

    main.__doc__ = doc
    return main, define_flags
