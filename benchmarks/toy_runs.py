"""Runs, curves and figures shared by the toy-scale studies (collapse_study.py, toy_paper_table.py).

A row is a demo config plus ``--set`` overrides; each (row, seed) trains in its own process on the same
synthetic data, under a study folder this module made (marked, so it never deletes another folder).
A run whose settings match a finished run in that folder is reused, so the two studies share rows.

Example:
    >>> study = Study("runs/toy_study", ToySetting(steps_per_epoch=20, epochs=3), jobs=2)
    >>> results = study.run_rows([Row("PoseCons", "demo_cons")], seeds=[0, 1])
    >>> curves(results["PoseCons"], "unl_net1")        # [seeds, validations] unlabelled AP
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Callable

from posedual_tf import files

MARKER = ".toy_study"


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    config: str
    overrides: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ToySetting:
    """The synthetic world and schedule every row of a study shares."""

    epochs: int = 10
    steps_per_epoch: int = 100
    labelled_images: int = 20
    unlabelled_images: int = 400
    val_images: int = 40
    #: The unlabelled AP and peak statistics are measured on the people of the first N unlabelled images.
    unlabelled_eval_images: int = 100
    image_size: tuple[int, int] = (64, 96)          # [W, H] of the crops; heatmaps are a quarter
    sigma: float = 1.5
    batch_size: int = 16
    precision: str = "mixed_bfloat16"
    extra: tuple[str, ...] = ()                     # further --set overrides for every row

    def overrides(self) -> list[str]:
        w, h = self.image_size
        return [f"train.epochs={self.epochs}", f"train.steps_per_epoch={self.steps_per_epoch}",
                f"train.lr_step=[{self.epochs}]", "train.val_interval=1", f"train.batch_size={self.batch_size}",
                f"train.mixed_precision={self.precision}", f"data.image_size=[{w},{h}]",
                f"data.heatmap_size=[{w // 4},{h // 4}]", f"data.sigma={self.sigma}", "train.checkpoint_every_steps=0",
                "train.image_summary_every=1000000", *self.extra]


#: The child process: one run, its threads limited so that ``jobs`` runs share the cores.
_CHILD = """
import sys, tensorflow as tf
threads = int(sys.argv[1])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
from posedual_tf import config, demo, training
cfg = config.load(sys.argv[2], sys.argv[3:])
demo.prepare_data(cfg)
training.run(cfg, progress="none")
"""


class Study:
    """A study folder: shared synthetic data and one workdir per (row settings, seed)."""

    def __init__(self, root: str, setting: ToySetting, jobs: int = 1, threads: int | None = None):
        self.root, self.setting, self.jobs = pathlib.Path(root), setting, max(1, jobs)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.jobs)
        if self.root.exists() and not (self.root / MARKER).exists():
            raise SystemExit(f"error: {root} exists and was not made by a toy study; choose another --workdir")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()
        self.compute_s = 0.0       # seconds of the runs made (not reused) by this study
        self.reused = 0

    def _data_dir(self) -> pathlib.Path:
        s = self.setting
        return self.root / f"data_{s.labelled_images}_{s.unlabelled_images}_{s.val_images}_{s.unlabelled_eval_images}"

    def _data_sets(self) -> list[str]:
        """The data every row reads: one copy per synthetic world, made before runs start side by side."""
        s, data = self.setting, self._data_dir()
        return [f"data.labelled.records={data}/records/train", f"data.val.records={data}/records/val",
                f"data.val.annotations={data}/synthetic/val.json",
                f"data.unlabelled.records={data}/records/unlabelled",
                f"data.unlabelled_eval.records={data}/records/unlabelled_gt",
                f"data.unlabelled_eval.annotations={data}/synthetic/unlabelled_eval.json",
                f"data.synthetic.labelled_images={s.labelled_images}",
                f"data.synthetic.unlabelled_images={s.unlabelled_images}", f"data.synthetic.val_images={s.val_images}"]

    def _sets(self, row: Row, seed: int) -> tuple[list[str], pathlib.Path]:
        sets = self.setting.overrides() + list(row.overrides) + [f"train.seed={seed}"]
        key = hashlib.sha1(json.dumps([row.config] + sets).encode()).hexdigest()[:12]
        workdir = self.root / "runs" / f"{row.config}_{key}"
        data = [d for d in self._data_sets() if row.config != "demo_sup" or not d.startswith("data.unlabelled.")]
        return sets + data + [f"workdir={workdir}"], workdir

    def _finished(self, workdir: pathlib.Path) -> dict | None:
        done = workdir / "train_result.json"
        if not done.exists():
            return None
        result = json.loads(done.read_text())
        if result["final_step"] != self.setting.epochs * self.setting.steps_per_epoch:
            return None
        timing = workdir / "toy_study.json"           # how long the run took when it was made
        if timing.exists():
            result["wall_s"] = json.loads(timing.read_text())["wall_s"]
        return result

    def run_rows(self, rows: list[Row], seeds: list[int]) -> dict[str, list[dict]]:
        """Every (row, seed), ``jobs`` at a time; ``{row name: [train_result per seed]}``."""
        todo = [(row, seed) for row in rows for seed in seeds]
        results: dict[tuple[str, int], dict] = {}
        running: list[tuple[Row, int, pathlib.Path, subprocess.Popen, float, object]] = []
        self._prepare_data()
        while todo or running:
            while todo and len(running) < self.jobs:
                row, seed = todo.pop(0)
                sets, workdir = self._sets(row, seed)
                done = self._finished(workdir)
                if done is not None:
                    results[(row.name, seed)] = done
                    self.reused += 1
                    print(f"{row.name} seed {seed}: reused {workdir}", flush=True)
                    continue
                files.claim(str(workdir), "train")        # the run's workdir, holding the study's log beside it
                log = open(files.own(str(workdir), "log.txt", "toy_study"), "w")
                proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(self.threads), row.config, *sets],
                                        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
                running.append((row, seed, workdir, proc, time.time(), log))
            time.sleep(1.0)
            for item in list(running):
                row, seed, workdir, proc, start, log = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                log.close()
                took = time.time() - start
                self.compute_s += took
                if proc.returncode:
                    for other in running:          # no run is left going on its own after the study stops
                        other[3].terminate()
                        other[3].wait()
                    tail = (workdir / "log.txt").read_text()[-3000:]
                    raise SystemExit(f"{row.name} seed {seed} failed (log {workdir}/log.txt):\n{tail}")
                result = json.loads((workdir / "train_result.json").read_text())
                result["wall_s"] = round(took)
                write_text(files.own(str(workdir), "toy_study.json", "toy_study"), json.dumps({"wall_s": result["wall_s"], "jobs": self.jobs}))
                results[(row.name, seed)] = result
                last = result["validation"][-1]
                print(f"{row.name} seed {seed}: val AP {last['net1']:.4f}, unlabelled AP {last['unl_net1']:.4f}, "
                      f"unlabelled peaks below {last['unl_net1_peaks_below']:.3f} ({took:.0f} s)", flush=True)
        return {row.name: [results[(row.name, s)] for s in seeds] for row in rows}

    def _prepare_data(self) -> None:
        """The synthetic splits, and the ground truth of the first ``unlabelled_eval_images`` unlabelled
        images as the unlabelled evaluation set."""
        from posedual_tf import config, demo
        from posedual_tf.conversion import coco

        sets = [d for d in self._data_sets() if not d.startswith("data.unlabelled_eval")]
        demo.prepare_data(config.load("demo_cons", sets + ["data.unlabelled_eval.records=''"]))
        prefix = self._data_dir() / "records/unlabelled_gt"
        if (prefix.parent / "unlabelled_gt.json").exists():
            return
        src = self._data_dir() / "synthetic"
        gt = json.loads((src / "unlabelled.json").read_text())
        images = gt["images"][: self.setting.unlabelled_eval_images]
        keep = {im["id"] for im in images}
        subset = dict(gt, images=images, annotations=[a for a in gt["annotations"] if a["image_id"] in keep])
        write_text(str(src / "unlabelled_eval.json"), json.dumps(subset))
        coco.convert(str(src / "unlabelled_eval.json"), str(src / "unlabelled"), str(prefix), workers=1)


# ------------------------------------------------------------------------------------------- curves

#: The curves of a run: its validations' values (val AP, unlabelled AP, unlabelled peak statistics).
CURVES = {"val AP": "net1", "unlabelled AP": "unl_net1", "unlabelled mean peak": "unl_net1_peak_mean",
          "unlabelled peaks < 0.1": "unl_net1_peaks_below"}


def curves(runs: list[dict], key: str) -> list[list[float]]:
    """``[seeds][validations]`` of one history key."""
    return [[float(v[key]) for v in r["validation"]] for r in runs]


def steps(runs: list[dict]) -> list[int]:
    return [int(v["step"]) for v in runs[0]["validation"]]


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def final(runs: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample std over seeds of a key's last value."""
    return mean_std([c[-1] for c in curves(runs, key)])


def fmt(ms: tuple[float, float], digits: int = 3) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def curves_json(results: dict[str, list[dict]]) -> dict:
    """Every row's curves per seed, for the study's json output."""
    return {name: {"step": steps(runs), **{label: curves(runs, key) for label, key in CURVES.items()},
                   "collapse_indicator_train": [r["history"].get("collapse_1", []) for r in runs],
                   "seconds": [r.get("wall_s", r["seconds"]) for r in runs]}
            for name, runs in results.items()}


COLOURS = [(60, 60, 60), (40, 40, 220), (0, 140, 255), (220, 120, 30), (40, 170, 40), (170, 40, 170),
           (30, 170, 200), (120, 60, 0), (140, 140, 0)]


def plot(results: dict[str, list[dict]], panels: list[tuple[str, str]], path: str, title: str = "") -> None:
    """One panel per (title, history key): per row the mean over seeds (line) and its min-max (band)."""
    import cv2
    import numpy as np

    w, h, pad, legend = 430, 330, 48, 22 * ((len(results) + 1) // 2) + 30
    canvas = np.full((h + legend, w * len(panels), 3), 255, np.uint8)
    for p, (label, key) in enumerate(panels):
        x0 = p * w
        data = {name: (steps(runs), np.array(curves(runs, key))) for name, runs in results.items()}
        xmax = max(max(s) for s, _ in data.values())
        ymax = max(float(np.nanmax(c)) for _, c in data.values()) * 1.1 or 1.0
        to_px = lambda x, y: (int(x0 + pad + (w - pad - 12) * x / xmax), int(h - pad - (h - 2 * pad) * y / ymax))
        cv2.rectangle(canvas, (x0 + pad, pad), (x0 + w - 12, h - pad), (0, 0, 0), 1)
        cv2.putText(canvas, label, (x0 + pad, pad - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        for frac in (0.0, 0.5, 1.0):
            y = ymax / 1.1 * frac
            cv2.putText(canvas, f"{y:.2f}", (x0 + 6, to_px(0, y)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(canvas, f"step {xmax}", (x0 + w - 90, h - pad + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        for (name, (xs, c)), colour in zip(data.items(), COLOURS):
            lo, hi, mean = c.min(0), c.max(0), c.mean(0)
            band = np.array([to_px(x, y) for x, y in zip(xs, hi)] + [to_px(x, y) for x, y in zip(xs[::-1], lo[::-1])])
            overlay = canvas.copy()
            cv2.fillPoly(overlay, [band.astype(np.int32)], colour)
            canvas[:] = cv2.addWeighted(overlay, 0.18, canvas, 0.82, 0)
            pts = [to_px(x, y) for x, y in zip(xs, mean)]
            for a, b in zip(pts, pts[1:]):
                cv2.line(canvas, a, b, colour, 2)
    if title:
        cv2.putText(canvas, title, (pad, h + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    for i, (name, colour) in enumerate(zip(results, COLOURS)):
        x, y = pad + (i % 2) * 520, h + 34 + 22 * (i // 2)
        cv2.line(canvas, (x, y - 4), (x + 24, y - 4), colour, 3)
        cv2.putText(canvas, name, (x + 30, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    tmp = path + ".tmp.png"
    cv2.imwrite(tmp, canvas)
    os.replace(tmp, path)


def check_out(path: str, setting: dict, replace: bool) -> None:
    """Refuse to replace a study's page made with other settings (a --quick run over the published
    docs/ page) unless ``--replace``; a file there that no study wrote is never replaced."""
    if not os.path.exists(path):
        return
    try:
        before = json.loads(pathlib.Path(path).read_text())["setting"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SystemExit(f"error: {path} exists and was not written by a toy study; choose another --out") from None
    if before != json.loads(json.dumps(setting)) and not replace:
        changed = sorted(k for k in set(before) | set(setting) if before.get(k) != json.loads(json.dumps(setting)).get(k))
        raise SystemExit(f"error: {path} holds a study made with other settings ({', '.join(changed)} differ); "
                         "choose another --out, or pass --replace to replace it")


def write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    pathlib.Path(tmp).write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- command line

def add_arguments(ap, defaults: ToySetting, workdir: str) -> None:
    """The options both studies take: the synthetic world, the schedule, seeds and parallel runs."""
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--steps-per-epoch", type=int, default=defaults.steps_per_epoch)
    ap.add_argument("--labelled-images", type=int, default=defaults.labelled_images)
    ap.add_argument("--unlabelled-images", type=int, default=defaults.unlabelled_images)
    ap.add_argument("--val-images", type=int, default=defaults.val_images)
    ap.add_argument("--unlabelled-eval-images", type=int, default=defaults.unlabelled_eval_images)
    ap.add_argument("--image-size", type=int, nargs=2, default=list(defaults.image_size), metavar=("W", "H"))
    ap.add_argument("--sigma", type=float, default=defaults.sigma)
    ap.add_argument("--precision", default=defaults.precision, choices=["none", "mixed_bfloat16"])
    ap.add_argument("--seeds", type=int, default=3, help="train.seed 0..N-1 (the data stay the same)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (the cores are shared between them)")
    ap.add_argument("--rows", default="", help="comma-separated row numbers (1-based) to run; default all")
    ap.add_argument("--set", action="append", default=[], help="a further config override for every row")
    ap.add_argument("--workdir", default=workdir, help="study folder (made and marked by these scripts; reused)")
    ap.add_argument("--out", default=None, help="where the page, figure and json go (default: docs; with --quick "
                    "runs/quick_studies)")
    ap.add_argument("--replace", action="store_true", help="replace a page in --out made with other settings")


def setting_of(args) -> ToySetting:
    return ToySetting(args.epochs, args.steps_per_epoch, args.labelled_images, args.unlabelled_images,
                      args.val_images, args.unlabelled_eval_images, tuple(args.image_size), args.sigma, precision=args.precision, extra=tuple(args.set))


def command_line(script: str, args, defaults: ToySetting) -> str:
    """The command that reproduces a run of ``script`` (its non-default options)."""
    parts = [f"python benchmarks/{script}"]
    for name in ("epochs", "steps_per_epoch", "labelled_images", "unlabelled_images", "val_images",
                 "unlabelled_eval_images", "sigma", "precision"):
        if getattr(args, name) != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    if tuple(args.image_size) != tuple(defaults.image_size):
        parts.append(f"--image-size {args.image_size[0]} {args.image_size[1]}")
    if args.seeds != 3:
        parts.append(f"--seeds {args.seeds}")
    parts += [f"--set {s}" for s in args.set]
    return " ".join(parts)


def selected(rows: list[Row], spec: str) -> list[Row]:
    if not spec:
        return rows
    return [rows[int(i) - 1] for i in spec.split(",")]


def keep_reading(path: str) -> str:
    """The hand-written ``## Reading`` section of an existing page (kept when the page is regenerated)."""
    if not os.path.exists(path):
        return ""
    text = pathlib.Path(path).read_text()
    at = text.find("\n## Reading")
    return text[at:] if at >= 0 else ""


def run_study(args, rows: list[Row], stem: str, panels: list[tuple[str, str]],
              page: Callable[[dict, object, ToySetting, float], str]) -> dict:
    """Run (or reuse) every row and seed, then write ``OUT/<stem>.json`` (every curve of every seed),
    ``.png`` (``panels``) and ``.md`` (``page(results, args, setting, seconds of all its runs)`` and the
    kept reading); returns the json's content."""
    setting = setting_of(args)
    args.out = args.out or ("runs/quick_studies" if getattr(args, "quick", False) else "docs")
    check_out(os.path.join(args.out, f"{stem}.json"), dataclasses.asdict(setting), args.replace)
    study = Study(args.workdir, setting, jobs=args.jobs)
    start = time.time()
    results = study.run_rows(rows, list(range(args.seeds)))
    os.makedirs(args.out, exist_ok=True)
    out = {"setting": dataclasses.asdict(setting), "epochs": setting.epochs, "curves": curves_json(results),
           "compute_s": round(study.compute_s), "wall_s": round(time.time() - start), "reused_runs": study.reused}
    write_text(os.path.join(args.out, f"{stem}.json"), json.dumps(out, indent=1))
    plot(results, panels, os.path.join(args.out, f"{stem}.png"),
         f"mean over {args.seeds} seeds (line) and their range (band); x: training step")
    md = os.path.join(args.out, f"{stem}.md")
    run_s = sum(r.get("wall_s", r["seconds"]) for runs in results.values() for r in runs)
    write_text(md, page(results, args, setting, run_s) + keep_reading(md))
    print(pathlib.Path(md).read_text())
    print(f"compute: {study.compute_s / 60:.1f} min of runs made ({study.reused} reused), "
          f"wall {out['wall_s'] / 60:.1f} min")
    return out
