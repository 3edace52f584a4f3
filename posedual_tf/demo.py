"""The embedded default: synthetic people generated and converted inside a demo config's workdir.

Used by ``python -m posedual_tf.train --config demo_dual``: :func:`prepare_data` makes the
labelled, unlabelled (detected-style boxes; with ``data.unlabelled_eval`` also their ground truth) and
validation splits on first run, and
:func:`export_after_training` writes the SavedModel at the end.
"""
from __future__ import annotations

import contextlib
import os

from posedual_tf.config import Config
from posedual_tf.data import records


def is_demo(cfg: Config) -> bool:
    return cfg.data.labelled.source == "synthetic"


def data_dir(cfg: Config) -> str:
    """Where the synthetic images and json live: ``synthetic/`` beside the ``records/`` folder."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(cfg.data.labelled.records))), "synthetic")


def prepare_data(cfg: Config, workers: int = 1) -> None:
    """Generate and convert whatever split is missing (idempotent; each step is atomic)."""
    from posedual_tf.conversion import coco, detections, synthetic, writer

    from posedual_tf import files

    s = cfg.data.synthetic
    src = data_dir(cfg)
    work = os.path.abspath(cfg.workdir)
    top = os.path.relpath(src, work).split(os.sep)[0]
    size = (s.image_height, s.image_width)
    # (json and images of the split, records prefix, images to generate, first image id, converter)
    splits = [("train", cfg.data.labelled.records, s.labelled_images, 1, "gt"),
              ("val", cfg.data.val.records, s.val_images, 500_000, "gt"),
              ("unlabelled", cfg.data.unlabelled.records, s.unlabelled_images, 1_000_000, "detections"),
              ("unlabelled", cfg.data.unlabelled_eval.records, s.unlabelled_images, 1_000_000, "gt")]
    missing = [split for split in splits if split[1] and not os.path.exists(records.manifest_path(split[1]))]
    if not missing:
        return
    seeds = {"train": 0, "val": 1, "unlabelled": 2}
    with contextlib.ExitStack() as held:
        if top not in ("..", ".") and not os.path.isabs(top):     # the demo data live in the workdir: claim it,
            held.enter_context(files.writing(cfg.workdir, "train", accepts=("evaluate",), setting="workdir"))
            files.own(cfg.workdir, top, "train")                    # and write them as its one writer
        for split, prefix, n, first_id, kind in missing:
            if not os.path.exists(os.path.join(src, f"{split}.json")):
                print(f"generating {n} synthetic images ({split}) in {files.shown_path(src)}")
                synthetic.generate(src, n, s.seed + 1000 * seeds[split], split, size, first_id)
            images = os.path.join(src, split)
            if kind == "detections":
                manifest = detections.convert(os.path.join(src, f"{split}_image_info.json"),
                                              os.path.join(src, f"{split}_detections.json"), images, prefix,
                                              workers=workers)
            else:
                manifest = coco.convert(os.path.join(src, f"{split}.json"), images, prefix, workers=workers)
            writer.report(manifest, prefix)


def export_after_training(cfg: Config, net: str = "best") -> str:
    """The demo's SavedModel of network ``net`` (``best``: :mod:`posedual_tf.best_net`'s rule; ``1``, ``2``
    or ``ensemble``) of the final weights; prints the folder and the network."""
    from posedual_tf import export, files

    out = files.own(cfg.workdir, "saved_model", "export")
    export.export(cfg, os.path.join(cfg.workdir, "final"), out, net=net, overwrite=True)   # the demo's own export
    return out
