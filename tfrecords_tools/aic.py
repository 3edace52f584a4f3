"""AI Challenger 2017 keypoint annotations (raw format) -> TFRecords.

The command line of :mod:`posedual_tf.conversion.aic` (what it converts and how: there).

Example:
    python -m tfrecords_tools.aic --annotations keypoint_train_annotations_20170909.json \\
        --images keypoint_train_images_20170902 --output data/aic/train
"""
from __future__ import annotations

from posedual_tf import joints
from posedual_tf.conversion import aic as conversion
from tfrecords_tools import common


main, _define_flags = common.single_file_tool(conversion.__doc__, "raw AIC keypoint annotation json", conversion.build_entries, joints.AIC, "aic")


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    from absl import flags

    from posedual_tf import cli

    _define_flags()
    flags.adopt_module_key_flags(cli)
    flags.adopt_module_key_flags(common)


if __name__ == "__main__":
    from posedual_tf import cli

    cli.run(main, define_flags)
