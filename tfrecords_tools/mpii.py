"""MPII (simple-baseline json: center, scale, joints, joints_vis) -> TFRecords.

The command line of :mod:`posedual_tf.conversion.mpii` (what it converts and how: there).

Example:
    python -m tfrecords_tools.mpii --annotations annot/train.json --images images --output data/mpii/train
"""
from __future__ import annotations

from posedual_tf import joints
from posedual_tf.conversion import mpii as conversion
from tfrecords_tools import common


main, _define_flags = common.single_file_tool(conversion.__doc__, "MPII json in the simple-baseline format", conversion.build_entries, joints.MPII, "mpii")


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
