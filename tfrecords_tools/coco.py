"""COCO-format person keypoints -> TFRecords (COCO train/val2017, its 1K/5K/10K subsets, custom sets).

The command line of :mod:`posedual_tf.conversion.coco` (what it converts and how: there).

Example:
    python -m tfrecords_tools.coco --annotations person_keypoints_train2017.json \\
        --images train2017 --output data/coco/train2017
"""
from __future__ import annotations

from posedual_tf import joints
from posedual_tf.conversion import writer
from posedual_tf.conversion.coco import convert
from posedual_tf.conversion.writer import ConversionError
from tfrecords_tools import common


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    from absl import flags

    from posedual_tf import cli

    flags.DEFINE_string("annotations", None, "COCO-format keypoint annotation json")
    flags.DEFINE_integer("max-instances", 0, "keep the first N instances (0 = all)", lower_bound=0)
    flags.DEFINE_string("keypoint-map", "", "NAME=UNION,...: place keypoints whose names are neither COCO's "
                        f"(left_shoulder, ...) nor union joint names, e.g. head=head_top; union names: "
                        f"{', '.join(joints.UNION_NAMES)}")
    flags.DEFINE_string("keypoint-names", "", "N1,N2,...: the annotated joints' names in order, replacing the "
                        "category's 'keypoints' list (for files whose list and annotations disagree)")
    common.define_converter_flags()
    flags.adopt_module_key_flags(cli)
    flags.adopt_module_key_flags(common)


def main(argv) -> None:
    del argv
    from absl import flags

    from posedual_tf import cli

    f = flags.FLAGS
    cli.required("annotations")
    images, output, num_shards, workers = common.converter_flags()
    try:
        kmap = joints.parse_keypoint_map(f["keypoint-map"].value)
    except ValueError as e:
        raise ConversionError(str(e)) from None
    names = [n.strip() for n in f["keypoint-names"].value.split(",") if n.strip()] or None
    manifest = convert(f.annotations, images, output, f["max-instances"].value, num_shards, workers, kmap or None,
                       names)
    writer.report(manifest, output)


if __name__ == "__main__":
    from posedual_tf import cli

    cli.run(main, define_flags)
