"""One run of a paper table (:mod:`posedual_tf.paper_tables`): what it needs before it starts, how many
GPUs its recipe trains on, how far its workdir has got, and what it scored.

Everything here reads files only (configs, manifests, the workdir's ``train_result.json`` and
``train_log.txt``): ``python -m posedual_tf.reproduce --dry-run`` and its report use it without TensorFlow.

Example:
    >>> import tempfile
    >>> from posedual_tf import config, table_runs
    >>> cfg = config.load("coco1k_dual_multiaugs", [f"workdir={tempfile.mkdtemp()}"])
    >>> table_runs.recipe_gpus(cfg)            # 128 people in groups of 32: the reference's 4 GPUs
    4
    >>> table_runs.progress(cfg).state
    'new'
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re

from posedual_tf.config import Config

#: Convolution TFLOP of one training step of each paper config (its global batch), written by
#: ``benchmarks/paper_step_costs.py``: the GPU-hours estimate of ``--dry-run``.
STEP_COSTS = pathlib.Path(__file__).resolve().parent / "tables" / "step_costs.json"
#: People in the datasets an epoch runs over, where the paper configs' sets are known before they are
#: converted (a converted set's manifest is read instead): COCO train2017's people by the reference's
#: loading rule (Simple Baselines' logs: 149,813), MPII train (22,246).
KNOWN_PEOPLE = {("coco", "data/coco/train2017"): 149_813, ("mpii", "data/mpii/train"): 22_246}
_STEP_LINE = re.compile(r" step (\d+) \(epoch ")


class Unfinished(RuntimeError):
    """Some runs of a table failed or could not start (each says why in its line and in the report)."""


def recipe_gpus(cfg: Config) -> int:
    """The GPUs the recipe trains on: its global batch in groups of ``train.replica_batch`` (the
    reference's per-GPU batch), one group per GPU."""
    t = cfg.train
    return max(1, t.batch_size // t.replica_batch) if t.replica_batch else 1


def prerequisites(cfg: Config) -> list[tuple[str, str]]:
    """(setting, path) of what the run reads before it trains: its converted data (a demo config makes its
    own) and its initial weights."""
    from posedual_tf import demo

    out = []
    if not demo.is_demo(cfg):
        out += [(f"data.{role}.records", getattr(cfg.data, role).records)
                for role in ("labelled", "unlabelled", "val", "unlabelled_eval") if getattr(cfg.data, role).records]
        if cfg.data.val.annotations:
            out.append(("data.val.annotations", cfg.data.val.annotations))
    if cfg.model.pretrained and cfg.model.pretrained != "none":
        out.append(("model.pretrained", cfg.model.pretrained))
    return out


def missing(cfg: Config) -> dict[str, str]:
    """What the run needs and does not have (:func:`prerequisites`): path -> one line saying how to make it."""
    from posedual_tf import checkpoints
    from posedual_tf.data import records, sources

    out = {}
    for setting, path in prerequisites(cfg):
        role = setting.split(".")[1]
        if setting.endswith(".records") and not os.path.isfile(records.manifest_path(path)):
            out.setdefault(path, sources.no_records_line(getattr(cfg.data, role), role))
        elif setting == "data.val.annotations" and not os.path.isfile(path):
            out[path] = f"{setting}: {path} not found (the dataset's ground-truth file, as downloaded)"
    try:
        checkpoints.check_pretrained(cfg)
    except checkpoints.PretrainedError as e:
        out[cfg.model.pretrained] = str(e)
    return out


def epoch_people(cfg: Config) -> int | None:
    """People in the set an epoch runs over (the unlabelled set, or the labelled one without it): from the
    converted manifest, else :data:`KNOWN_PEOPLE`; None when neither knows."""
    from posedual_tf.data import records

    ds = cfg.data.unlabelled if cfg.data.unlabelled.records else cfg.data.labelled
    try:
        n = int(records.read_manifest(ds.records)["num_instances"])
    except (OSError, ValueError, KeyError, TypeError):
        n = KNOWN_PEOPLE.get((ds.source, ds.records))
    if n is not None and ds is cfg.data.labelled and ds.max_instances:
        n = min(n, ds.max_instances)
    return n


def planned_steps(cfg: Config) -> int | None:
    """The run's training steps (epochs x steps per epoch); None when its epoch size is unknown."""
    t = cfg.train
    if t.steps_per_epoch:
        return t.epochs * t.steps_per_epoch
    people = epoch_people(cfg)
    return None if people is None else t.epochs * math.ceil(people / t.batch_size)


def step_tflop(name: str) -> float | None:
    """Convolution TFLOP of one step of config ``name`` (:data:`STEP_COSTS`); None if not measured."""
    try:
        costs = json.loads(STEP_COSTS.read_text())
    except (OSError, ValueError):
        return None
    entry = costs.get("configs", {}).get(name)
    return float(entry["tflop_per_step"]) if isinstance(entry, dict) and "tflop_per_step" in entry else None


@dataclasses.dataclass
class Progress:
    state: str                      # new (nothing trained), partial (stopped or running), done
    steps: int = 0                  # steps trained
    total: int | None = None        # steps of the whole run
    seconds: float | None = None    # training time of the finished run
    metrics: dict = dataclasses.field(default_factory=dict)


def progress(cfg: Config) -> Progress:
    """How far ``cfg``'s workdir has got: ``done`` when its ``train_result.json`` (of this config) has every
    step, ``partial`` when a run trained some steps (``train_log.txt``), else ``new``."""
    total = planned_steps(cfg)
    result = _read_json(os.path.join(cfg.workdir, "train_result.json"))
    if isinstance(result, dict) and result.get("config") == cfg.name:
        try:
            total = int(result["epochs"]) * int(result["steps_per_epoch"])
            steps = int(result["final_step"])
        except (KeyError, TypeError, ValueError):
            steps = 0
        if total and steps >= total:
            return Progress("done", steps, total, result.get("seconds"), result.get("metrics") or {})
    steps = last_step(os.path.join(cfg.workdir, "train_log.txt"))
    return Progress("partial" if steps else "new", steps, total)


def last_step(log: str) -> int:
    """The last step a run's ``train_log.txt`` recorded (0: none)."""
    steps = _STEP_LINE.findall("\n".join(tail(log)))
    return int(steps[-1]) if steps else 0


def tail(path: str, size: int = 8192) -> list[str]:
    """The non-empty lines of a log's last ``size`` bytes ([] when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ours(metrics: dict, compare: str, metric: str) -> dict:
    """Our numbers of a finished run in the table's unit (AP in percent, PCKh as is): each head's, and
    ``compared`` = the one ``compare`` names (``mean``: of the networks; a single network: its own)."""
    from posedual_tf.evaluation.runner import primary

    scale = 100.0 if metric == "AP" else 1.0
    heads = {h: round(scale * primary(s), 2) for h, s in metrics.items() if not h.startswith("_")}
    nets = [heads[h] for h in heads if h.startswith("net")]
    if not nets:
        return {"heads": heads, "compared": None}
    if len(nets) == 1:
        compared = nets[0]
    elif compare == "mean":
        compared = round(sum(nets) / len(nets), 2)
    else:
        compared = heads.get(compare)
    return {"heads": heads, "compared": compared}
