"""Reproduce a paper table: ``python -m posedual_tf.reproduce --table NAME [--gpus 0,1,2,3 | --hosts a,b]
[--dry-run]``.

The tables (``posedual_coco``, ``multiaugs_coco``, ``coco_wild``, ``mpii_aic``, ``demo``) are data in the
package (:mod:`posedual_tf.paper_tables`). The command trains every config of the table, runs named in a
cell's ``after`` first, each in ``<--runs>/<config>`` with ``python -m posedual_tf.train``: one run per
GPU, or as many GPUs as its recipe trains on (the global batch in groups of ``train.replica_batch``: 4 for
MultiAugs' 4 x 32; fewer GPUs give the same groups, :mod:`posedual_tf.models.bn_groups`). Started again, it
skips the finished runs and resumes the others where their checkpoints stopped. A run whose data or
initial weights are missing is not started: one line names what is missing and how to make it.

It writes ``<--output>/<table>.md`` and ``.json`` (our number per head, the published one, the
difference, each run's status, steps and time) after every change, and prints the table at the end.
``--dry-run`` prints the plan (order, GPUs, steps, what each run needs) and the GPU-hours estimate
(the step's convolution TFLOP from ``benchmarks/paper_step_costs.py`` at ``--gpu-tflops``) and runs nothing.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import textwrap
import time

from absl import flags

from posedual_tf import cli, files, paper_tables, table_runs

FLAGS = flags.FLAGS
#: How ``--hosts`` starts a run on a host (the same path and Python there: a shared file system).
SSH = "ssh -o BatchMode=yes"


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("table", None, f"the table: one of {', '.join(paper_tables.names())}, or a table .yaml")
    flags.DEFINE_list("gpus", [], "GPU ids to train on (CUDA_VISIBLE_DEVICES of each run); default: one run at a "
                                  "time on what TensorFlow sees")
    flags.DEFINE_list("hosts", [], "hosts to start runs on over ssh (shared file system, same paths); each "
                                   "host one run at a time, or one per --gpus id")
    flags.DEFINE_list("only", [], "train only these configs of the table (the others are reported as they are)")
    flags.DEFINE_string("runs", "runs", "the folder of the runs' workdirs (<runs>/<config>)")
    flags.DEFINE_string("output", None, "where the table's .md/.json, the runs' logs and the state go "
                                        "(default <runs>/table_<table>)")
    flags.DEFINE_multi_string("set", [], "a config override for every run: --set model.weights_dir=DIR "
                                         "(repeatable)")
    flags.DEFINE_bool("dry-run", False, "print the plan and the GPU-hours estimate; run nothing")
    flags.DEFINE_float("gpu-tflops", 10.0, "--dry-run: the sustained convolution TFLOP/s of one GPU that the "
                                           "estimate assumes (an assumption: about a V100 in fp32; "
                                           "benchmarks/train_step.py measures yours)",
                       lower_bound=0.001)
    flags.DEFINE_float("poll-s", 5.0, "seconds between looks at the running runs", lower_bound=0.05)
    flags.adopt_module_key_flags(cli)
    cli.only_when("gpu-tflops", lambda: FLAGS["dry-run"].value, "only with --dry-run (the estimate)")


@dataclasses.dataclass
class Run:
    name: str
    cfg: object
    cells: list                      # the table's cells this run fills
    after: list[str]
    status: str = "waiting"          # waiting, running, done, failed, missing, not selected
    why: str = ""                    # failed: the run's last line; missing: what is missing
    places: tuple = ()
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    proc: subprocess.Popen | None = None
    log: str = ""                    # its log file (every start of the run appends to it)


def main(argv):
    del argv
    from posedual_tf import config

    cli.required("table", hint=f"one of {', '.join(paper_tables.names())}")
    table = paper_tables.load(FLAGS.table)
    order = paper_tables.plan(table)
    unknown = [n for n in FLAGS.only if n not in order]
    if unknown:
        raise cli.UsageError(f"--only {unknown[0]}: not a config of {table.name} ({', '.join(order)})")
    runs = {}
    for name in order:
        try:
            cfg = config.load(name, [f"workdir={os.path.join(FLAGS.runs, name)}", *FLAGS.set])
        except config.ConfigError as e:
            raise config.ConfigError(f"{name}: {e}") from None
        runs[name] = Run(name, cfg, [c for c in table.cells if c.config == name], paper_tables.depends_on(table, name))
    out = FLAGS.output or os.path.join(FLAGS.runs, f"table_{table.name}")
    for run in runs.values():
        run.log = os.path.join(out, "logs", f"{run.name}.log")
    if FLAGS["dry-run"].value:
        print(dry_run(table, runs, FLAGS["gpu-tflops"].value, FLAGS.gpus, FLAGS.hosts))
        return
    with files.writing(out, "reproduce", setting="--output"):
        reproduce(table, runs, out, _places(FLAGS.gpus, FLAGS.hosts), list(FLAGS.set), FLAGS.only,
                  FLAGS["poll-s"].value)


# ------------------------------------------------------------------------------------------ the plan

def dry_run(table, runs: dict, gpu_tflops: float, gpus: list[str], hosts: list[str]) -> str:
    """The plan: each run in order with its GPUs, steps, estimate and needs; the GPU-hours; the table."""
    lines = [table.title, "", f"plan: {len(runs)} runs, in this order (GPU-hours at {gpu_tflops:g} TFLOP/s "
                              "per GPU, --gpu-tflops):"]
    total, unknown, problems = 0.0, [], {}
    for i, run in enumerate(runs.values(), 1):
        cfg = run.cfg
        steps, tflop = table_runs.planned_steps(cfg), table_runs.step_tflop(run.name)
        hours = None if steps is None or tflop is None else steps * tflop / gpu_tflops / 3600
        if hours is None:
            unknown.append(run.name)
        else:
            total += hours
        state = table_runs.progress(cfg)
        lines.append(f"{i:>2}. {run.name}")
        lines.append(f"    {table_runs.recipe_gpus(cfg)} GPU(s), "
                     f"{'?' if steps is None else f'{steps:,}'} steps of {cfg.train.batch_size}, "
                     f"{'?' if tflop is None else f'{tflop:.2f}'} TFLOP/step, "
                     f"{'?' if hours is None else f'{hours:,.1f}'} GPU-h; {state.state}")
        for c in run.cells:
            lines.append(f"    fills: {c.row} / {c.column}"
                         + (f", published {c.published:.1f}" if c.published is not None else ""))
        if run.after:
            lines.append(f"    after: {', '.join(run.after)}")
        absent = table_runs.missing(cfg)
        if state.state == "done":           # the table's status column: done, missing (what), or waiting
            run.status = "done"
        elif absent:
            run.status, run.why = "missing", next(iter(absent))
        for setting, path in table_runs.prerequisites(cfg):
            lines.append(f"    needs {path} ({setting})" + (": MISSING" if path in absent else ""))
        problems.update(absent)
    places = _places(gpus, hosts)
    lines += ["", f"GPU-hours: {total:,.1f} for {len(runs) - len(unknown)} of {len(runs)} runs"
              + (f"; not counted (epoch size unknown until their data exist): {', '.join(unknown)}"
                 if unknown else "")]
    if total and places[0][1] is not None:
        lines.append(f"  at least {total / len(places):,.1f} h of wall time on {len(places)} GPU(s)")
    if problems:
        lines += ["", "missing (no run that needs these starts):"]
        lines += [textwrap.fill(p, 80, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False,
                                break_long_words=False) for p in problems.values()]
    return "\n".join([*map(_fit, lines), "", console_table(table, runs)])


def _fit(line: str) -> str:
    """``line`` wrapped at 80 columns, its continuation indented under it (paths are never cut)."""
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.fill(line, 80, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False) \
        if len(line) > 80 else line


# ------------------------------------------------------------------------------------------ running

def _places(gpus: list[str], hosts: list[str]) -> list[tuple]:
    """(host or None, GPU id or None) pairs a run can take."""
    return [(h, g) for h in (hosts or [None]) for g in (gpus or [None])]


def reproduce(table, runs: dict, out: str, places: list[tuple], sets: list[str], only: list[str],
              poll_s: float) -> None:
    """Run the table's runs (those in ``only``, if given) to the end or failure on ``places`` (:func:`_places`),
    each with the config overrides ``sets``, writing the report into ``out`` after every change."""
    logs = files.own(out, "logs")
    os.makedirs(logs, exist_ok=True)
    state_path = files.own(out, "state.json")
    busy: dict[tuple, str] = {}
    earlier = files.read_json(state_path, "reproduce's state") if os.path.isfile(state_path) else {}
    for run in runs.values():
        progress = table_runs.progress(run.cfg)
        if only and run.name not in only:
            run.status = "done" if progress.state == "done" else "not selected"
        elif progress.state == "done":
            run.status = "done"
        elif _adopt(run, (earlier or {}).get(run.name) or {}):
            for place in run.places:
                busy[tuple(place)] = run.name
            print(f"{run.name}: still running from an earlier start (pid {run.pid}); waiting for it")
        else:
            problems = list(table_runs.missing(run.cfg).values())
            if problems:
                run.status, run.why = "missing", problems[0]
                print(f"{run.name}: not started: {problems[0]}")
    report(table, runs, out)
    try:
        while True:
            changed = _collect(runs, busy)
            for run in runs.values():
                if run.status != "waiting":
                    continue
                blocked = [a for a in run.after if runs[a].status in ("failed", "missing", "not selected")]
                if blocked:
                    run.status, run.why = "failed", f"not started: {blocked[0]} did not finish"
                    changed = True
                    continue
                if any(runs[a].status != "done" for a in run.after):
                    continue
                taken = _free_places(run, places, busy)
                if taken:
                    _start(run, taken, sets)
                    for place in taken:
                        busy[place] = run.name
                    changed = True
            if changed:
                _save_state(state_path, runs)
                report(table, runs, out)
            if not any(r.status in ("waiting", "running") for r in runs.values()):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for run in runs.values():
            if run.proc is not None and run.proc.poll() is None:
                run.proc.wait()            # it got the interrupt too: it saves its checkpoint and stops
        _collect(runs, busy)
        report(table, runs, out)
        raise
    print(console_table(table, runs))
    print(f"table: {files.shown_path(os.path.join(out, table.name + '.md'))} (and .json)")
    failed = [r.name for r in runs.values() if r.status in ("failed", "missing")]
    if failed:
        raise table_runs.Unfinished(f"{len(failed)} run(s) did not finish: {', '.join(failed)}; fix them and run "
                                    "the same command again (finished runs are kept, the others resume)")


def _free_places(run: Run, places: list[tuple], busy: dict) -> list[tuple]:
    """The places ``run`` starts on now (all on one host), or [] to wait: as many GPUs as its recipe, else
    the most that divides it evenly (every replica the same number of groups)."""
    for host in dict.fromkeys(h for h, _ in places):
        free = [p for p in places if p[0] == host and p not in busy]
        on_host = [p for p in places if p[0] == host]
        if on_host[0][1] is None:
            if free:
                return free[:1]
            continue
        want = table_runs.recipe_gpus(run.cfg)
        n = max(d for d in range(1, min(want, len(on_host)) + 1) if want % d == 0)
        if len(free) >= n:
            return free[:n]
    return []


def _command(run: Run, places: list[tuple], sets: list[str]) -> tuple[list[str], dict]:
    """The command line (and environment) that trains ``run`` on ``places``: here, or over ssh on their host."""
    args = [sys.executable, "-m", "posedual_tf.train", "--config", run.name,
            f"--set=workdir={run.cfg.workdir}", *[f"--set={s}" for s in sets], "--progress=lines"]
    env = dict(os.environ)
    gpus = [g for _, g in places if g is not None]
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    host = places[0][0]
    if host is None:
        return args, env
    remote = f"cd {shlex.quote(os.getcwd())} && " + (f"CUDA_VISIBLE_DEVICES={','.join(gpus)} " if gpus else "") + \
        shlex.join(args)
    return [*shlex.split(os.environ.get("POSEDUAL_SSH", SSH)), host, remote], dict(os.environ)


def _start(run: Run, places: list[tuple], sets: list[str]) -> None:
    args, env = _command(run, places, sets)
    log = run.log
    with open(log, "a") as f:                     # a log: appended by every start of the run
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(args)}\n")
        f.flush()
        run.proc = subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    run.status, run.places, run.started, run.pid, run.why = "running", tuple(places), time.time(), run.proc.pid, ""
    where = ", ".join(f"{h + ':' if h else ''}GPU {g}" if g is not None else (h or "this machine")
                      for h, g in places)
    print(f"{run.name}: started on {where} (log: {files.shown_path(log)})", flush=True)


def _collect(runs: dict, busy: dict) -> bool:
    """Mark the runs that ended; True if any did."""
    changed = False
    for run in runs.values():
        if run.status != "running":
            continue
        code = run.proc.poll() if run.proc is not None else (None if _alive(run.pid, run.name) else -1)
        if code is None:
            continue
        run.ended = time.time()
        for place in run.places:
            busy.pop(tuple(place), None)
        if table_runs.progress(run.cfg).state == "done":
            run.status = "done"
            print(f"{run.name}: done", flush=True)
        else:
            run.status, run.why = "failed", (table_runs.tail(run.log) or ["it stopped without a line"])[-1][:300]
            print(f"{run.name}: failed: {run.why}", flush=True)
        changed = True
    return changed


def _alive(pid: int | None, name: str) -> bool:
    """A process ``pid`` that is a training run of config ``name`` (not a new process with a reused pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except (OSError, ProcessLookupError):
        return False
    return b"posedual_tf.train" in cmdline and name.encode() in cmdline


def _adopt(run: Run, saved: dict) -> bool:
    """A run that an earlier, killed reproduce started on this machine and that still trains: followed."""
    if saved.get("host") or not _alive(saved.get("pid"), run.name):
        return False
    run.status, run.pid, run.started = "running", saved["pid"], saved.get("started")
    run.places = tuple(tuple(p) for p in saved.get("places") or [(None, None)])
    return True


def _save_state(path: str, runs: dict) -> None:
    files.write_json_atomic(path, {r.name: {"pid": r.pid, "host": r.places[0][0] if r.places else None,
                                            "places": [list(p) for p in r.places], "started": r.started}
                                   for r in runs.values() if r.status == "running"})


# ------------------------------------------------------------------------------------------ the report

def _rows(table, runs: dict) -> list[dict]:
    """One entry per cell: ours (per head and compared), published, difference, the run's status."""
    out = []
    for c in table.cells:
        run = runs.get(c.config) if c.config else None
        entry = {"row": c.row, "column": c.column, "config": c.config, "published": c.published,
                 "source": c.source, "compare": c.compare, "note": c.note}
        if run is None:
            entry.update(status="no config", ours=None, heads={}, difference=None)
            out.append(entry)
            continue
        progress = table_runs.progress(run.cfg)
        numbers = table_runs.ours(progress.metrics, c.compare, table.metric) if progress.state == "done" else \
            {"heads": {}, "compared": None}
        ours = numbers["compared"]
        elapsed = progress.seconds if progress.state == "done" else \
            (time.time() - run.started if run.status == "running" and run.started else None)
        entry.update(status=run.status, why=run.why, ours=ours, heads=numbers["heads"],
                     difference=None if ours is None or c.published is None else round(ours - c.published, 2),
                     steps=progress.steps, total_steps=progress.total, seconds=elapsed,
                     workdir=run.cfg.workdir)
        out.append(entry)
    return out


def _num(v, fmt=".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _hours(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def markdown(table, rows: list[dict]) -> str:
    """The table as the paper lays it out (ours, published and the difference in each cell), then a line per run."""
    metric = table.metric + (f" (published: {table.published_split})" if table.published_split else "")
    lines = [f"# {table.title}", "", f"Each cell: ours / published ({metric}), ours minus published. "
             "Ours: the last validation of the run's final weights.", "",
             "| method | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    for label in table.rows():
        cells = []
        for column in table.columns:
            r = next((x for x in rows if x["row"] == label and x["column"] == column), None)
            if r is None:
                cells.append("")
            else:
                text = f"{_num(r['ours'], '.2f')} / {_num(r['published'])}"
                if r["difference"] is not None:
                    text += f" ({r['difference']:+.2f})"
                cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| cell | config | status | steps | time | ours (per head) | compared | published | source |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        heads = ", ".join(f"{h} {v:.2f}" for h, v in r.get("heads", {}).items()) or "-"
        status = r["status"] + (f": {r['why']}" if r.get("why") else "") + \
            (f" ({r['note']})" if r["status"] == "no config" and r["note"] else "")
        steps = f"{r['steps']}/{_num(r.get('total_steps'), 'd')}" if r["config"] else "-"
        lines.append(f"| {r['row']} / {r['column']} | {r['config'] or '-'} | {status.replace('|', '/')} | {steps} | "
                     f"{_hours(r.get('seconds'))} | {heads} | {r['compare']} | {_num(r['published'])} | "
                     f"{r['source'] or '-'} |")
    return "\n".join(lines) + "\n"


def console_table(table, runs: dict) -> str:
    """The report in under 80 columns: two lines per cell."""
    lines = [*textwrap.wrap(table.title, 80), f"ours vs published ({table.metric}"
             + (f"; published: {table.published_split}" if table.published_split else "") + ")"]
    for r in _rows(table, runs):
        head = f"{r['row']} / {r['column']}"
        if r["config"] is None:
            lines.append(f"{head}: published {_num(r['published'])}; no config")
            continue
        lines.append(_fit(f"{head} ({r['config']})"))
        status = r["status"] if not r.get("why") else f"{r['status']}: {r['why']}"
        detail = f"  {status}, {r['steps']}/{_num(r['total_steps'], 'd')} steps, {_hours(r['seconds'])}"
        if r["ours"] is not None:
            detail += f"; {r['ours']:.2f} ({r['compare'] if len(r['heads']) > 1 else 'net1'})"
            if r["published"] is not None:
                detail += f" vs {r['published']:.1f}: {r['difference']:+.2f}"
        elif r["published"] is not None:
            detail += f"; published {r['published']:.1f}"
        lines.append(_fit(detail))
    return "\n".join(lines)


def report(table, runs: dict, out: str) -> None:
    """Write ``<table>.md`` and ``<table>.json`` into ``out``."""
    rows = _rows(table, runs)
    md, js = files.own_all(out, [f"{table.name}.md", f"{table.name}.json"])
    files.write_atomic(md, markdown(table, rows))
    files.write_json_atomic(js, {"table": table.name, "title": table.title, "metric": table.metric,
                                 "published_split": table.published_split, "cells": rows})


if __name__ == "__main__":
    cli.run(main, define_flags)
