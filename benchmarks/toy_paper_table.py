"""The paper's comparison at toy scale, on synthetic people: Supervised, PoseCons (single), PoseDual,
PoseDual + joint cutout and MultiAugs (dual, the 1K paths JC/JO/JOCO/JCCM), same labelled/unlabelled
data, same steps, batch and seed.

    python benchmarks/toy_paper_table.py [--steps-per-epoch 50 --epochs 6] [--out docs]

Writes ``docs/toy_results.md`` (an AP table laid out like the paper's) and ``docs/toy_results.png``
(AP and the collapse indicator, the mean max heatmap response on unlabelled hard views, over training).
PoseDual trains two networks, so it spends twice the compute of the others per step (as in the paper).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROWS = [("Supervised", "demo_sup", []),
        ("PoseCons (single)", "demo_cons", []),
        ("PoseDual (dual)", "demo_dual", []),
        ("PoseDual (dual) + Joint Cutout", "demo_dual", ["method.mask_joint_num=5"]),
        ("MultiAugs (dual)", "demo_multiaugs", [])]
COLOURS = [(60, 60, 60), (40, 40, 220), (220, 120, 30), (40, 170, 40), (170, 40, 170)]
AUGMENTATION = {"demo_dual": "Affine", "demo_multiaugs": "Affine + JC, JO, JOCO, JCCM (4 paths)"}


def plot(results, path: str) -> None:
    """Two panels (AP, collapse indicator) drawn with OpenCV."""
    import cv2
    import numpy as np

    w, h, pad = 520, 360, 50
    canvas = np.full((h, 2 * w, 3), 255, np.uint8)
    panels = [("val AP (net 1)", lambda r: [(v["step"], v["net1"]) for v in r["validation"]]),
              ("collapse indicator (train, hard views)",
               lambda r: [((i + 1) * r["steps_per_epoch"], c) for i, c in enumerate(r["history"].get("collapse_1", []))])]
    for p, (title, series) in enumerate(panels):
        x0 = p * w
        data = [series(r) for r in results]
        xs = [x for d in data for x, _ in d] or [1]
        ys = [y for d in data for _, y in d] or [1]
        xmax, ymax = max(xs), max(max(ys), 1e-3) * 1.1
        cv2.rectangle(canvas, (x0 + pad, pad), (x0 + w - 10, h - pad), (0, 0, 0), 1)
        cv2.putText(canvas, title, (x0 + pad, pad - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        cv2.putText(canvas, f"{ymax:.3f}", (x0 + 2, pad + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(canvas, "0", (x0 + 30, h - pad), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(canvas, f"step {xmax}", (x0 + w - 90, h - pad + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        for d, colour in zip(data, COLOURS):
            pts = [(int(x0 + pad + (w - pad - 10) * x / xmax), int(h - pad - (h - 2 * pad) * y / ymax)) for x, y in d]
            for a, b in zip(pts, pts[1:]):
                cv2.line(canvas, a, b, colour, 2)
            for q in pts:
                cv2.circle(canvas, q, 3, colour, -1)
    for i, ((name, _, _), colour) in enumerate(zip(ROWS, COLOURS)):
        cv2.putText(canvas, name, (pad + 10 + 200 * i, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    cv2.imwrite(path, canvas)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--labelled-images", type=int, default=20)
    ap.add_argument("--unlabelled-images", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="runs/toy_table")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    marker = os.path.join(args.workdir, ".toy_paper_table")
    if os.path.exists(args.workdir):      # start afresh, but only in a folder this script made
        if not os.path.exists(marker):
            raise SystemExit(f"error: --workdir {args.workdir} exists and was not made by this script; choose another")
        shutil.rmtree(args.workdir)
    os.makedirs(args.workdir)
    open(marker, "w").close()
    common = [f"train.epochs={args.epochs}", f"train.steps_per_epoch={args.steps_per_epoch}",
              f"train.lr_step=[{args.epochs}]", "train.val_interval=1", f"train.seed={args.seed}",
              f"data.synthetic.labelled_images={args.labelled_images}",
              f"data.synthetic.unlabelled_images={args.unlabelled_images}", f"data.synthetic.seed={args.seed}"]
    data = os.path.join(args.workdir, "shared_data")
    results = []
    for name, cfg_name, extra in ROWS:
        workdir = os.path.join(args.workdir, name.split()[0].lower() + ("_jc" if extra else ""))
        sets = common + extra + [f"workdir={workdir}",
                                 f"data.labelled.records={data}/records/train", f"data.val.records={data}/records/val",
                                 f"data.unlabelled.records={data}/records/unlabelled",
                                 f"data.val.annotations={data}/synthetic/val.json"]
        if cfg_name == "demo_sup":
            sets = [s for s in sets if not s.startswith("data.unlabelled")]
        start = time.time()
        code = ("import sys; from posedual_tf import config, demo, training\n"
                "cfg = config.load(sys.argv[1], sys.argv[2:])\n"
                "demo.prepare_data(cfg)\n"
                "training.run(cfg, progress='none')\n")
        proc = subprocess.run([sys.executable, "-c", code, cfg_name, *sets], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(pathlib.Path(workdir, "train_result.json").read_text())
        r["name"], r["wall_s"], r["config"] = name, round(time.time() - start), cfg_name
        results.append(r)
        print(f"{name}: AP {r['metrics']['net1']['AP']:.4f} ({r['wall_s']} s)", flush=True)
    os.makedirs(args.out, exist_ok=True)
    plot(results, os.path.join(args.out, "toy_results.png"))
    lines = ["# Toy-scale version of the paper's table (synthetic people)", "",
             f"Command: `python benchmarks/toy_paper_table.py --epochs {args.epochs} --steps-per-epoch "
             f"{args.steps_per_epoch} --labelled-images {args.labelled_images} --unlabelled-images "
             f"{args.unlabelled_images} --seed {args.seed}` (2 CPU cores).", "",
             "Labelled: the synthetic `train` split; unlabelled: its own split with detected-style boxes; "
             "evaluation: COCO AP (pycocotools, GT boxes, no flip) on the `val` split. ResNet-18 at width 0.25, "
             f"96x64 input, batch 16, {args.epochs * args.steps_per_epoch} steps, same seed for every row.", "",
             "| Method | Augmentation | AP (net 1) | AP (ensemble) | AP .5 | final collapse indicator | train time |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        aug = "Affine + Joint Cutout" if "Cutout" in r["name"] else AUGMENTATION.get(r["config"], "Affine")
        ens = f"{m['ensemble']['AP']:.4f}" if "ensemble" in m else "-"
        col = r["history"].get("collapse_1", [float("nan")])[-1]
        lines.append(f"| {r['name']} | {aug} | {m['net1']['AP']:.4f} | {ens} | {m['net1']['AP .5']:.4f} | "
                     f"{col:.3f} | {r['wall_s']} s |")
    lines += ["", "![AP and collapse indicator over training](toy_results.png)", ""]
    pathlib.Path(args.out, "toy_results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
