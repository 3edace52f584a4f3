"""``python -m posedual_tf.reproduce`` (issue #44): the paper tables' dry runs against the papers' numbers
(written here from the papers, not read from the tables), the plan's order, the one-line refusals, the
scheduler over hosts and GPUs, and the demo table end to end with a kill between two runs and a resume."""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from posedual_tf import paper_tables

# (row, column) -> (config or None, published number), from the papers' tables:
# PoseDual's README table (ICCV 2021) and MultiAugs' Tables 1, 2 and 5 (arXiv 2402.11566).
PAPERS = {
    "posedual_coco": {
        ("Supervised, Affine", "1K"): ("coco1k_sup", 31.5), ("Supervised, Affine", "5K"): ("coco5k_sup", 46.4),
        ("Supervised, Affine", "10K"): ("coco10k_sup", 51.1),
        ("PoseCons, Affine", "1K"): ("coco1k_cons", 38.5), ("PoseCons, Affine", "5K"): (None, 50.5),
        ("PoseCons, Affine", "10K"): (None, 55.4),
        ("PoseCons, Affine + Joint Cutout", "1K"): (None, 42.1), ("PoseCons, Affine + Joint Cutout", "5K"): (None, 52.3),
        ("PoseCons, Affine + Joint Cutout", "10K"): (None, 57.3),
        ("PoseDual, Affine", "1K"): ("coco1k_dual", 41.5), ("PoseDual, Affine", "5K"): ("coco5k_dual", 54.8),
        ("PoseDual, Affine", "10K"): ("coco10k_dual", 58.7),
        ("PoseDual, Affine + RandAug", "1K"): ("coco1k_dual_randaug", 43.7),
        ("PoseDual, Affine + RandAug", "5K"): (None, 55.4), ("PoseDual, Affine + RandAug", "10K"): (None, 59.3),
        ("PoseDual, Affine + Joint Cutout", "1K"): ("coco1k_dual_jointcut", 44.6),
        ("PoseDual, Affine + Joint Cutout", "5K"): (None, 55.6),
        ("PoseDual, Affine + Joint Cutout", "10K"): (None, 59.6)},
    "multiaugs_coco": {
        ("Supervised, Affine", "1K"): ("coco1k_sup", 31.5), ("Supervised, Affine", "5K"): ("coco5k_sup", 46.4),
        ("Supervised, Affine", "10K"): ("coco10k_sup", 51.1),
        ("PoseDual, Affine + Joint Cutout", "1K"): ("coco1k_dual_jointcut", 44.6),
        ("PoseDual, Affine + Joint Cutout", "5K"): (None, 55.6),
        ("PoseDual, Affine + Joint Cutout", "10K"): (None, 59.6),
        ("MultiAugs (Single), JC, JO, JOCO, JCCM", "1K"): ("coco1k_cons_multiaugs", 45.5),
        ("MultiAugs (Single), JC, JO, JOCO, JCCM", "5K"): (None, 56.2),
        ("MultiAugs (Single), JC, JO, JOCO, JCCM", "10K"): (None, 59.9),
        ("MultiAugs (Dual), JC, JO, JOCO, JCCM", "1K"): ("coco1k_dual_multiaugs", 49.7),
        ("MultiAugs (Dual), JC, JO, JOCO, JCCM", "5K"): ("coco5k_dual_multiaugs", 58.8),
        ("MultiAugs (Dual), JC, JO, JOCO, JCCM", "10K"): ("coco10k_dual_multiaugs", 61.8)},
    "coco_wild": {
        ("Supervised", "ResNet-50"): ("coco_sup_res50", 70.9), ("Supervised", "ResNet-101"): (None, 72.5),
        ("Supervised", "HRNet-W48"): ("coco_sup_hrnet_w48", 77.2),
        ("PoseDual, Joint Cutout", "ResNet-50"): ("coco_wild_dual_res50", 73.9),
        ("PoseDual, Joint Cutout", "ResNet-101"): ("coco_wild_dual_res101", 75.3),
        ("PoseDual, Joint Cutout", "HRNet-W48"): ("coco_wild_dual_hrnet_w48_384x288", 79.2),
        ("MultiAugs (Single), JOCO, JCCM", "ResNet-50"): (None, 74.0),
        ("MultiAugs (Single), JOCO, JCCM", "ResNet-101"): (None, 75.4),
        ("MultiAugs (Single), JOCO, JCCM", "HRNet-W48"): (None, 79.3),
        ("MultiAugs (Dual), JOCO, JCCM", "ResNet-50"): ("coco_wild_dual_multiaugs_res50", 74.6),
        ("MultiAugs (Dual), JOCO, JCCM", "ResNet-101"): ("coco_wild_dual_multiaugs_res101", 76.3),
        ("MultiAugs (Dual), JOCO, JCCM", "HRNet-W48"): ("coco_wild_dual_multiaugs_hrnet_w48_384x288", 79.5)},
    "mpii_aic": {
        ("PoseDual, Joint Cutout", "HRNet-W32 256x256"): (None, 93.0),
        ("PoseDual, Joint Cutout", "ResNet-18 256x256"): ("mpii_aic_dual_res18", None),
        ("MultiAugs (Dual), JOCO, JCCM", "HRNet-W32 256x256"): ("mpii_aic_dual_multiaugs_hrnet_w32", 93.4)},
}
# which of our numbers stands beside the published one: PoseDual selects on net 1, MultiAugs' Dual is the mean
COMPARED = {("multiaugs_coco", "MultiAugs (Dual), JC, JO, JOCO, JCCM"): "mean",
            ("multiaugs_coco", "PoseDual, Affine + Joint Cutout"): "net1",
            ("posedual_coco", "PoseDual, Affine"): "net1", ("coco_wild", "MultiAugs (Dual), JOCO, JCCM"): "mean",
            ("coco_wild", "PoseDual, Joint Cutout"): "net1", ("mpii_aic", "MultiAugs (Dual), JOCO, JCCM"): "mean"}
# the recipes' GPUs (global batch / the reference's per-GPU batch)
GPUS = {"coco1k_dual": 1, "coco1k_dual_multiaugs": 4, "coco_sup_res50": 4, "coco_wild_dual_hrnet_w48_384x288": 1,
        "coco_wild_dual_multiaugs_hrnet_w48_384x288": 4, "mpii_aic_dual_multiaugs_hrnet_w32": 4, "coco1k_sup": 1}

DEMO_SETS = ["--set=train.epochs=1", "--set=train.steps_per_epoch=4", "--set=data.synthetic.labelled_images=16",
             "--set=data.synthetic.unlabelled_images=16", "--set=data.synthetic.val_images=8",
             "--set=train.val_interval=1"]


def _reproduce(args, cwd, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "posedual_tf.reproduce", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def _blocks(plan_text: str) -> dict[str, list[str]]:
    """The dry run's plan: config -> its lines, in order."""
    out, current = {}, None
    for line in plan_text.split("\n\nGPU-hours")[0].splitlines():
        m = re.match(r"^ *\d+\. (\S+)$", line)
        if m:
            current = out.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line.strip())
    return out


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_dry_run_lists_the_papers_configs_and_numbers(name, tmp_path):
    proc = _reproduce(["--table", name, "--dry-run", "--runs", str(tmp_path / "runs")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blocks = _blocks(proc.stdout)
    expected_runs = [c for c, _ in PAPERS[name].values() if c]
    assert sorted(blocks) == sorted(set(expected_runs)), (sorted(blocks), expected_runs)
    for (row, column), (cfg, published) in PAPERS[name].items():
        fills = f"fills: {row} / {column}" + (f", published {published:.1f}" if published is not None else "")
        if cfg:
            assert fills in blocks[cfg], (cfg, fills, blocks[cfg])
        else:       # no config: the published number still shows, said to have no config
            assert f"{row} / {column}: published {published:.1f}; no config" in proc.stdout, (row, column)
    for cfg, lines in blocks.items():
        if cfg in GPUS:
            assert lines[0].startswith(f"{GPUS[cfg]} GPU(s)"), (cfg, lines[0])
        # what each run needs before it starts, every item named with its setting
        assert any("(model.pretrained)" in ln for ln in lines), (cfg, lines)
        assert any("(data.labelled.records): MISSING" in ln for ln in lines), (cfg, lines)
    table = paper_tables.load(name)
    for (t, row), compare in COMPARED.items():
        if t == name:
            assert {c.compare for c in table.cells if c.row == row} == {compare}, (row, compare)
    # supervised baselines first (the order the papers build on), then the table's order
    order = list(blocks)
    sup = [c for c in order if "sup" in c]
    assert order[:len(sup)] == sup, order
    assert "missing (no run that needs these starts):" in proc.stdout
    assert "GPU-hours:" in proc.stdout and not (tmp_path / "runs").exists()     # a dry run writes nothing


def test_dry_run_gpu_hours_from_steps_and_tflops(tmp_path):
    """coco1k_dual: 30 epochs x ceil(149,813 / 32) steps of 2.5712 TFLOP (ResNet-18 twice: the teacher's forward
    pass and two trained passes per network) at 25 TFLOP/s, and the same at another --gpu-tflops."""
    hours = {}
    for tflops in (25, 50):
        proc = _reproduce(["--table", "posedual_coco", "--dry-run", "--only", "coco1k_dual",
                           f"--gpu-tflops={tflops}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        line = _blocks(proc.stdout)["coco1k_dual"][0]
        assert line.startswith("1 GPU(s), 140,460 steps of 32, 2.57 TFLOP/step"), line
        hours[tflops] = float(re.search(r"([\d.,]+) GPU-h", line).group(1))
    assert hours[25] == pytest.approx(30 * 4682 * 2.5712 / 25 / 3600, abs=0.06)
    assert hours[50] == pytest.approx(hours[25] / 2, abs=0.06)


def test_dependencies_first_and_cycles_refused(tmp_path):
    table = tmp_path / "t.yaml"
    table.write_text(textwrap.dedent("""
        title: t
        metric: AP
        columns: [a]
        rows:
          - name: first
            cells: {a: {config: demo_dual, after: [demo_cons]}}
          - name: second
            cells: {a: {config: demo_cons, after: [demo_sup]}}
          - name: third
            cells: {a: {config: demo_sup}}
        """))
    assert paper_tables.plan(paper_tables.load(str(table))) == ["demo_sup", "demo_cons", "demo_dual"]
    table.write_text(table.read_text().replace("{config: demo_sup}", "{config: demo_sup, after: [demo_dual]}"))
    with pytest.raises(paper_tables.TableError, match="demo_cons, demo_dual, demo_sup wait for each other"):
        paper_tables.load(str(table))


@pytest.mark.parametrize("change, message", [
    ("{config: demo_nope}", "rows[0].cells.a.config: expected the name of a shipped config"),
    ("{confg: demo_sup}", "rows[0].cells.a: unknown field 'confg'"),
    ("{config: demo_sup, published: high}", "rows[0].cells.a.published: expected a number"),
    ("{config: demo_sup, compare: best}", "rows[0].cells.a.compare: expected one of net1, net2, mean, ensemble"),
    ("{config: demo_sup, after: [demo_dual]}", "after: expected configs of this table (demo_dual is not one)"),
])
def test_a_bad_table_is_one_line_naming_the_field(tmp_path, change, message):
    table = tmp_path / "t.yaml"
    table.write_text(f"title: t\nmetric: AP\ncolumns: [a]\nrows:\n  - name: r\n    cells: {{a: {change}}}\n")
    proc = _reproduce(["--table", str(table), "--dry-run"], tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr[-1500:]


def test_a_run_with_missing_data_or_weights_is_not_started(tmp_path):
    proc = _reproduce(["--table", "posedual_coco", "--only", "coco1k_dual", "--poll-s", "0.1"], tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert ("coco1k_dual: not started: data.labelled.records: no TFRecords at data/coco/train2017; create them with: "
            "python -m tfrecords_tools.coco") in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: 1 run(s) did not finish: coco1k_dual; fix them and run the same command again (finished runs are "
        "kept, the others resume)"), lines
    assert not (tmp_path / "runs" / "coco1k_dual").exists()         # nothing trained, no workdir made
    report = json.loads((tmp_path / "runs" / "table_posedual_coco" / "posedual_coco.json").read_text())
    cell = next(c for c in report["cells"] if c["config"] == "coco1k_dual")
    assert cell["status"] == "missing" and "data/coco/train2017" in cell["why"] and cell["published"] == 41.5
    assert next(c for c in report["cells"] if c["config"] == "coco1k_sup")["status"] == "not selected"


FAKE_SSH = """
import json, os, re, sys, time
host, command = sys.argv[1], sys.argv[2]
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps({"host": host, "command": command, "start": time.time()}) + "\\n")
workdir = re.search(r"--set=workdir=(\\S+)", command).group(1)
name = re.search(r"--config (\\S+)", command).group(1)
time.sleep({"demo_sup": 2.0, "demo_cons": 0.2, "demo_dual": 0.5}[name])      # h2 is free long before demo_sup ends
os.makedirs(workdir, exist_ok=True)
ap = {"demo_sup": [0.30], "demo_cons": [0.38], "demo_dual": [0.41, 0.43]}[name]
metrics = {f"net{i + 1}": {"AP": a} for i, a in enumerate(ap)}
with open(os.path.join(workdir, "train_result.json"), "w") as f:
    json.dump({"config": name, "epochs": 2, "steps_per_epoch": 3, "final_step": 6, "seconds": 5.0,
               "metrics": metrics}, f)
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps({"host": host, "end": time.time(), "name": name}) + "\\n")
"""


def test_hosts_and_gpus_scheduling_and_the_report(tmp_path):
    """Over --hosts (a stand-in ssh that records each command and writes the run's result): runs wait for the
    runs they name in 'after', two hosts run side by side, each run gets one GPU of its host as its recipe
    says, and the report puts our compared number beside the published one."""
    (tmp_path / "ssh.py").write_text(FAKE_SSH)
    table = tmp_path / "t.yaml"
    table.write_text(textwrap.dedent("""
        title: scheduling
        metric: AP
        compare: mean
        sources: {paper: "a paper"}
        columns: [a, b]
        rows:
          - name: sup
            cells: {a: {config: demo_sup, published: 31.5}}
          - name: cons
            cells: {a: {config: demo_cons, published: 40.0}}
          - name: dual
            cells: {a: {config: demo_dual, published: 41.0, after: [demo_sup]}, b: {published: 50.0}}
        """))
    env = dict(os.environ, POSEDUAL_SSH=f"{sys.executable} {tmp_path / 'ssh.py'}", FAKE_SSH_LOG=str(tmp_path / "log"))
    proc = _reproduce(["--table", str(table), "--hosts", "h1,h2", "--gpus", "3", "--poll-s", "0.1"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    starts = {re.search(r"--config (\S+)", e["command"]).group(1): e for e in events if "command" in e}
    ends = {e["name"]: e for e in events if "end" in e}
    assert sorted(starts) == ["demo_cons", "demo_dual", "demo_sup"]
    assert {starts["demo_sup"]["host"], starts["demo_cons"]["host"]} == {"h1", "h2"}    # side by side
    assert starts["demo_cons"]["start"] < ends["demo_sup"]["end"]
    assert starts["demo_dual"]["start"] >= ends["demo_sup"]["end"]                        # after its dependency
    for e in starts.values():
        assert e["command"].startswith(f"cd {tmp_path} && CUDA_VISIBLE_DEVICES=3 ")
        assert "-m posedual_tf.train --config" in e["command"]
    report = json.loads((tmp_path / "runs" / "table_t" / "t.json").read_text())
    cells = {(c["row"], c["column"]): c for c in report["cells"]}
    assert cells[("dual", "a")]["ours"] == pytest.approx(42.0)                 # the mean of 41 and 43
    assert cells[("dual", "a")]["heads"] == {"net1": 41.0, "net2": 43.0}
    assert cells[("dual", "a")]["difference"] == pytest.approx(1.0)
    assert cells[("sup", "a")]["difference"] == pytest.approx(-1.5)
    assert cells[("dual", "b")]["status"] == "no config" and cells[("dual", "b")]["published"] == 50.0
    md = (tmp_path / "runs" / "table_t" / "t.md").read_text()
    assert "| dual | 42.00 / 41.0 (+1.00) | - / 50.0 |" in md
    assert "dual / a (demo_dual)\n  done, 6/6 steps, 0.1 min; 42.00 (mean) vs 41.0: +1.00" in proc.stdout


def test_gpus_per_run_follow_the_recipe():
    from posedual_tf import config, reproduce

    run = reproduce.Run("coco1k_dual_multiaugs", config.load("coco1k_dual_multiaugs"), [], [])   # 4 x 32
    places = [(None, g) for g in "0123"]
    assert reproduce._free_places(run, places, {}) == places                     # its 4 GPUs
    assert reproduce._free_places(run, places, {(None, "0"): "x"}) == []         # waits for all 4
    assert reproduce._free_places(run, places[:3], {}) == places[:2]             # 3 given: 2 (2 groups each)
    one = reproduce.Run("coco1k_dual", config.load("coco1k_dual"), [], [])
    assert reproduce._free_places(one, places, {(None, "0"): "x"}) == [(None, "1")]


def test_demo_table_runs_resumes_after_a_kill_and_prints_the_table(tmp_path):
    """The demo table end to end on the CPU: killed (the whole process group) as the second run starts, then
    started again: the first run is kept, the others run, and the table shows all four."""
    args = [sys.executable, "-m", "posedual_tf.reproduce", "--table", "demo", "--poll-s", "0.2", *DEMO_SETS]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    seen = []
    deadline = time.time() + 600
    for line in first.stdout:
        seen.append(line)
        if line.startswith("demo_cons: started"):
            break
        assert time.time() < deadline, seen
    time.sleep(3)                   # the second run is under way
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert "demo_sup: done\n" in seen, seen
    runs = tmp_path / "runs"
    result = runs / "demo_sup" / "train_result.json"
    stamp = result.stat().st_mtime_ns
    assert not (runs / "demo_cons" / "train_result.json").exists()

    again = _reproduce(["--table", "demo", "--poll-s", "0.2", *DEMO_SETS], tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "demo_sup: started" not in again.stdout and result.stat().st_mtime_ns == stamp     # kept
    for name in ("demo_cons", "demo_dual", "demo_multiaugs"):
        assert f"{name}: started" in again.stdout and f"{name}: done" in again.stdout
        assert json.loads((runs / name / "train_result.json").read_text())["final_step"] == 4
    logs = runs / "table_demo" / "logs"
    assert (logs / "demo_cons.log").read_text().count("\n=== ") == 2              # started twice
    assert (logs / "demo_sup.log").read_text().count("\n=== ") == 1
    table = again.stdout[again.stdout.index("Demo: the four methods"):]
    assert table.count("  done, 4/4 steps") == 4, table
    assert all(len(line) <= 80 for line in table.splitlines()), table
    report = json.loads((runs / "table_demo" / "demo.json").read_text())
    assert [c["status"] for c in report["cells"]] == ["done"] * 4
    assert all(c["ours"] is not None and c["heads"] for c in report["cells"])
    # started once more: nothing to train, the same table
    third = _reproduce(["--table", "demo", "--poll-s", "0.2", *DEMO_SETS], tmp_path)
    assert third.returncode == 0 and "started" not in third.stdout, third.stdout[-2000:]


def test_a_run_is_done_only_with_every_step(tmp_path):
    from posedual_tf import config, table_runs

    cfg = config.load("demo_dual", [f"workdir={tmp_path}"])
    assert table_runs.progress(cfg).state == "new"
    (tmp_path / "train_log.txt").write_text("2026-12-07 10:00:00 step 2 (epoch 1): loss 1\n"
                                            "2026-12-07 10:00:01 step 3 (epoch 1): loss 1\n")
    result = {"config": "demo_dual", "epochs": 2, "steps_per_epoch": 3, "final_step": 3, "metrics": {}}
    (tmp_path / "train_result.json").write_text(json.dumps(result))        # a run stopped half way
    p = table_runs.progress(cfg)
    assert (p.state, p.steps) == ("partial", 3)
    (tmp_path / "train_result.json").write_text(json.dumps(dict(result, config="demo_sup", final_step=6)))
    assert table_runs.progress(cfg).state == "partial"                       # another config's result
    (tmp_path / "train_result.json").write_text(json.dumps(dict(result, final_step=6)))
    p = table_runs.progress(cfg)
    assert (p.state, p.steps, p.total) == ("done", 6, 6)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="a process's command line is read from /proc (Linux)")
def test_a_run_left_by_a_killed_reproduce_is_recognised(tmp_path):
    from posedual_tf import reproduce

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "posedual_tf.train",
                              "--config", "demo_sup"])
    try:
        deadline = time.time() + 30
        while b"posedual_tf.train" not in pathlib.Path(f"/proc/{child.pid}/cmdline").read_bytes():
            assert time.time() < deadline               # the child has not exec'd its command line yet
            time.sleep(0.05)
        assert reproduce._alive(child.pid, "demo_sup")
        assert not reproduce._alive(child.pid, "demo_dual")               # another run's process
        assert not reproduce._alive(os.getpid(), "demo_sup")              # not a training run
    finally:
        child.kill()
        child.wait()
    assert not reproduce._alive(child.pid, "demo_sup")                   # ended


def test_a_failed_run_reports_its_last_line_and_its_dependents_wait(tmp_path):
    (tmp_path / "ssh.py").write_text("import sys\nprint('epoch 1 ...')\nprint('error: data.val.records: broken')\n"
                                     "sys.exit(1)\n")
    table = tmp_path / "t.yaml"
    table.write_text("title: t\nmetric: AP\ncolumns: [a]\nrows:\n  - name: sup\n    cells: {a: {config: demo_sup}}\n"
                     "  - name: dual\n    cells: {a: {config: demo_dual, after: [demo_sup]}}\n")
    env = dict(os.environ, POSEDUAL_SSH=f"{sys.executable} {tmp_path / 'ssh.py'}")
    proc = _reproduce(["--table", str(table), "--hosts", "h1", "--poll-s", "0.1"], tmp_path, env, timeout=120)
    assert proc.returncode == 1
    assert "demo_sup: failed: error: data.val.records: broken" in proc.stdout
    assert "demo_dual: started" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 2 run(s) did not finish: demo_sup, demo_dual;")
    cells = json.loads((tmp_path / "runs" / "table_t" / "t.json").read_text())["cells"]
    assert [(c["status"], c["why"]) for c in cells] == [
        ("failed", "error: data.val.records: broken"), ("failed", "not started: demo_sup did not finish")]


@pytest.mark.parametrize("command, args, line", [
    ("posedual_tf.reproduce", [], "error: --table is required (one of coco_wild, demo, mpii_aic, multiaugs_coco, "
                                  "posedual_coco); --help lists every flag"),
    ("posedual_tf.rest_request", ["--image", "a.jpg", "--output", "r.json"],
     'error: --boxes is required (predict\'s format: {"a.jpg": [[x, y, w, h], ...]}); --help lists every flag'),
])
def test_a_missing_flag_is_one_line_with_what_to_give(command, args, line, tmp_path):
    proc = subprocess.run([sys.executable, "-m", command, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [line], proc.stderr[-1000:]
