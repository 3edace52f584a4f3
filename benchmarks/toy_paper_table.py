"""The paper's COCO table at toy scale, on synthetic people, with seeds: mean ± std per row.

    python benchmarks/toy_paper_table.py [--seeds 3 --jobs 2 --epochs E --steps-per-epoch S ...]

The rows of the paper's COCO table (ICCV 2021; docs/toy_results.md): Supervised, PoseCons, PoseCons + JC,
PoseDual, PoseDual + RandAug (M = 20), PoseDual + JC (K = 5), with the reference's joint-cutout box
sizes, plus PoseDual + JC with the boxes scaled to the input (``fixes.scaled_boxes``). The setting is
the collapse study's (benchmarks/collapse_study.py), and runs both share are trained once. Writes
``OUT/toy_results.md``, ``.png`` and ``.json``; the page keeps its hand-written ``## Reading`` section.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collapse_study import DEFAULTS  # noqa: E402
from toy_runs import Row, add_arguments, command_line, final, fmt, mean_std, run_study, selected  # noqa: E402

ROWS = [
    (Row("Supervised", "demo_sup"), "Affine", (31.5, 46.4, 51.1)),
    (Row("PoseCons (single)", "demo_cons"), "Affine", (38.5, 50.5, 55.4)),
    (Row("PoseCons (single) + JC", "demo_cons", ("method.mask_joint_num=5",)), "Affine + Joint Cutout",
     (42.1, 52.3, 57.3)),
    (Row("PoseDual (dual)", "demo_dual"), "Affine", (41.5, 54.8, 58.7)),
    (Row("PoseDual (dual) + RandAug", "demo_dual", ("method.rand_aug=true", "method.rand_magnitude=20")),
     "Affine + RandAug (M = 20)", (43.7, 55.4, 59.3)),
    (Row("PoseDual (dual) + JC", "demo_dual", ("method.mask_joint_num=5",)), "Affine + Joint Cutout (K = 5)",
     (44.6, 55.6, 59.6)),
    (Row("PoseDual (dual) + JC, scaled boxes", "demo_dual", ("method.mask_joint_num=5", "fixes.scaled_boxes=true")),
     "Affine + Joint Cutout, boxes x input/192", None),
]


def page(results, args, setting, seconds: float) -> str:
    n = len(next(iter(results.values())))
    lines = ["# The paper's table at toy scale (synthetic people)", "",
             f"Command: `{command_line('toy_paper_table.py', args, DEFAULTS)}` ({n} seeds; {len(results) * n} "
             f"runs, {seconds / 60:.0f} min of run time on 2 CPU cores, {args.jobs} runs side by side; the runs "
             "it shares with the collapse study are trained once).", "",
             f"The collapse study's setting (docs/collapse_study.md): ResNet-18 at width 0.25, "
             f"{setting.image_size[1]}x{setting.image_size[0]} crops, {setting.epochs * setting.steps_per_epoch} "
             f"steps of batch {setting.batch_size} (+ {setting.batch_size} unlabelled), {setting.precision}, "
             f"{setting.labelled_images} labelled and {setting.unlabelled_images} unlabelled synthetic images; "
             "COCO AP with pycocotools on the validation people (GT boxes, no flip) and on the unlabelled "
             "people (their ground truth). Mean ± std over seeds (train.seed 0..N-1, same data). The "
             "paper's numbers (COCO 1K / 5K / 10K labels, ResNet-18, the paper's COCO table) are for "
             "reading the order of the rows, not the values.", "",
             "| Method | Augmentation | AP (net 1) | AP (ensemble) | AP .5 | unlabelled AP | paper 1K / 5K / 10K | "
             f"run time, {args.jobs} at a time |", "|---|---|---|---|---|---|---|---|"]
    for row, aug, paper in ROWS:
        if row.name not in results:
            continue
        runs = results[row.name]
        ens = fmt(final(runs, "ensemble")) if "ensemble" in runs[0]["validation"][-1] else "-"
        ap5 = mean_std([r["metrics"]["net1"]["AP .5"] for r in runs])
        t = sum(r.get("wall_s", r["seconds"]) for r in runs) / len(runs)
        published = " / ".join(f"{v:.1f}" for v in paper) if paper else "-"
        lines.append(f"| {row.name} | {aug} | {fmt(final(runs, 'net1'))} | {ens} | {fmt(ap5)} | "
                     f"{fmt(final(runs, 'unl_net1'))} | {published} | {t:.0f} s |")
    lines += ["", "![val AP and unlabelled AP over training](toy_results.png)", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap, DEFAULTS, "runs/toy_study")
    args = ap.parse_args(argv)
    panels = [("val AP (net 1)", "net1"), ("unlabelled AP (net 1)", "unl_net1")]
    return run_study(args, selected([r for r, _, _ in ROWS], args.rows), "toy_results", panels, page)


if __name__ == "__main__":
    main()
