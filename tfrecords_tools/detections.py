"""Images plus detected person boxes -> TFRecords (COCO WILD unlabelled set, detected-box eval).

The command line of :mod:`posedual_tf.conversion.detections` (what it converts and how: there).

Example:
    python -m tfrecords_tools.detections --image-info image_info_unlabeled2017.json \\
        --detections COCO_unlabeled2017_detections_person_faster_rcnn.json \\
        --images unlabeled2017 --output data/coco/unlabeled2017
"""
from __future__ import annotations

from posedual_tf.conversion import writer
from posedual_tf.conversion.detections import convert
from tfrecords_tools import common


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    from absl import flags

    from posedual_tf import cli

    flags.DEFINE_string("image-info", None, "COCO image_info json (images, categories)")
    flags.DEFINE_string("detections", None, "COCO results json of person detections")
    flags.DEFINE_float("min-score", 0.0, "keep detections with score >= S", lower_bound=0.0, upper_bound=1.0)
    common.define_converter_flags()
    flags.adopt_module_key_flags(cli)
    flags.adopt_module_key_flags(common)


def main(argv) -> None:
    del argv
    from absl import flags

    from posedual_tf import cli

    f = flags.FLAGS
    cli.required("image-info", "detections")
    images, output, num_shards, workers = common.converter_flags()
    manifest = convert(f["image-info"].value, f.detections, images, output, f["min-score"].value, num_shards, workers)
    writer.report(manifest, output)


if __name__ == "__main__":
    from posedual_tf import cli

    cli.run(main, define_flags)
