"""The collapse study: which consistency pairs drift to background on unlabelled people, and which not.

    python benchmarks/collapse_study.py [--seeds 3 --jobs 2 --epochs E --steps-per-epoch S ...]
    python benchmarks/collapse_study.py --quick          # every row, a few steps: the output's shape only

Every row trains the same tiny ResNet-18 on the same synthetic people (mixed_bfloat16), 3 seeds. After
every epoch each run is evaluated on the validation people and on the *unlabelled* people with their
ground truth (pycocotools AP, GT boxes), with the mean of the predicted peaks and the fraction below 0.1
(collapse: every peak near 0). Writes ``OUT/collapse_study.md``, ``.png`` and ``.json`` (every curve of
every seed); the page keeps its hand-written ``## Reading`` section when it is regenerated.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from toy_runs import Row, ToySetting, add_arguments, command_line, final, fmt, run_study, selected  # noqa: E402

ROWS = [
    Row("Supervised", "demo_sup"),
    Row("Consistency, same difficulty (single)", "demo_cons", ("method.consistency_pair=same",)),
    Row("Consistency, reversed: hard -> easy (single)", "demo_cons", ("method.consistency_pair=reversed",)),
    Row("PoseCons: easy -> hard (single)", "demo_cons"),
    Row("PoseDual", "demo_dual"),
    Row("PoseDual + JC (scaled boxes)", "demo_dual", ("method.mask_joint_num=5", "fixes.scaled_boxes=true")),
    Row("MultiAugs (dual, scaled boxes)", "demo_multiaugs", ("fixes.scaled_boxes=true",)),
]
DEFAULTS = ToySetting(epochs=8, steps_per_epoch=100, labelled_images=20, unlabelled_images=400, sigma=1.5)
QUICK = ToySetting(epochs=2, steps_per_epoch=3, labelled_images=6, unlabelled_images=8, val_images=6,
                   unlabelled_eval_images=4, image_size=(64, 64))
PANELS = [("val AP", "net1"), ("unlabelled AP", "unl_net1"), ("unlabelled mean peak (collapse -> 0)",
                                                                "unl_net1_peak_mean")]


def page(results, args, setting, seconds: float) -> str:
    n = len(next(iter(results.values())))
    lines = ["# The collapse study (synthetic people)", "",
             f"Command: `{command_line('collapse_study.py', args, DEFAULTS)}` ({n} seeds; {len(results) * n} "
             f"runs, {seconds / 60:.0f} min of run time on 2 CPU cores, {args.jobs} runs side by side).", "",
             f"Every row: ResNet-18 at width 0.25, {setting.image_size[1]}x{setting.image_size[0]} crops, "
             f"heatmap sigma {setting.sigma:g}, batch {setting.batch_size} labelled + {setting.batch_size} "
             f"unlabelled, {setting.epochs * setting.steps_per_epoch} steps, {setting.precision}, "
             f"{setting.labelled_images} labelled and {setting.unlabelled_images} unlabelled synthetic images "
             "(1-3 people each), the same data for every seed (train.seed 0..N-1 changes initial weights and "
             "every draw). Evaluated after every epoch: val AP and unlabelled AP (pycocotools, GT boxes, no "
             "flip, net 1), the mean predicted peak on the unlabelled people and the fraction of peaks below "
             "0.1. Values are mean ± std over seeds at the end of training; the figure shows the mean (line) "
             "and the seeds' range (band).", "",
             f"| Row | val AP | unlabelled AP | unlabelled mean peak | peaks < 0.1 | run time, {args.jobs} at a time |",
             "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        t = sum(r.get("wall_s", r["seconds"]) for r in runs) / len(runs)
        lines.append(f"| {name} | {fmt(final(runs, 'net1'))} | {fmt(final(runs, 'unl_net1'))} | "
                     f"{fmt(final(runs, 'unl_net1_peak_mean'))} | {fmt(final(runs, 'unl_net1_peaks_below'))} | "
                     f"{t:.0f} s |")
    lines += ["", "![val AP, unlabelled AP and mean peak over training](collapse_study.png)", "",
              "Every curve of every seed: `collapse_study.json` (also the training-time collapse indicator, "
              "the mean peak on the hard views, per epoch)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap, DEFAULTS, "runs/toy_study")
    ap.add_argument("--quick", action="store_true", help="every row for a few steps, 1 seed (checks the output)")
    args = ap.parse_args(argv)
    if args.quick:
        for k in ("epochs", "steps_per_epoch", "labelled_images", "unlabelled_images", "val_images",
                  "unlabelled_eval_images"):
            setattr(args, k, getattr(QUICK, k))
        args.image_size, args.seeds, args.jobs = list(QUICK.image_size), 1, 3
    return run_study(args, selected(ROWS, args.rows), "collapse_study", PANELS, page)


if __name__ == "__main__":
    main()
