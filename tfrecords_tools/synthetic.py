"""A synthetic people dataset in COCO format (the demo's data).

The command line of :mod:`posedual_tf.conversion.synthetic` (what it draws: there).

    python -m tfrecords_tools.synthetic --output DIR --num-images 200 --seed 0 [--split-name train]
"""
from __future__ import annotations

from posedual_tf.conversion.synthetic import generate


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    from absl import flags

    from posedual_tf import cli

    flags.DEFINE_string("output", None, "output folder")
    flags.DEFINE_integer("num-images", 200, "images to generate", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "random seed", lower_bound=0)
    flags.DEFINE_string("split-name", "train", "the split's name: <output>/<split>.json and <output>/<split>/")
    flags.DEFINE_list("size", ["128", "128"], "H,W of every image")
    flags.DEFINE_integer("first-image-id", 1, "the first image's id", lower_bound=1)
    flags.adopt_module_key_flags(cli)


def main(argv) -> None:
    del argv
    from absl import flags

    from posedual_tf import cli

    f = flags.FLAGS
    cli.required("output")
    try:
        size = tuple(int(v) for v in f.size)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 16:
        raise cli.UsageError(f"--size {','.join(f.size)}: expected H,W, two integers >= 16")
    split = f["split-name"].value
    data = generate(f.output, f["num-images"].value, f.seed, split, size, f["first-image-id"].value)
    print(f"{f.output}: {len(data['images'])} images, {len(data['annotations'])} people ({split})")


if __name__ == "__main__":
    from posedual_tf import cli

    cli.run(main, define_flags)
