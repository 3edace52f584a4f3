"""The README's first screen has exactly two set-up commands, and CI runs the test one."""
from __future__ import annotations

import json
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent


def _first_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _first_block()
    assert len(commands) == 2
    main, tests = commands
    assert main.startswith("pip install -e") and "python -m posedual_tf.train --config demo_dual" in main
    install, run = (part.strip() for part in tests.split("&&"))
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert install in ci and run in ci
    # the demo config named in command one exists and is a synthetic (download-free) config
    from posedual_tf import config, demo

    assert demo.is_demo(config.load("demo_dual"))


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_the_quick_start_is_short_and_says_where_things_go():
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert len(quick.strip().splitlines()) < 60
    for needed in ("git clone", "python3 -m venv", "Python 3.11", "runs/"):
        assert needed in quick, needed
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "runs/" in ignored
    # every output path of a README command lies under runs/
    for block in _blocks("bash") + _blocks("python"):
        for path in re.findall(r"--output[ =](\S+)|--workdir[ =](\S+)", block):
            assert "".join(path).startswith("runs/"), path


def test_the_python_snippet_and_the_predict_command_run_as_written(tmp_path):
    """After a (reduced) demo run in a fresh folder, the README's Python snippet and its predict command run
    verbatim there, on the sample photo shipped with the package."""
    import subprocess
    import sys

    demo = subprocess.run([sys.executable, "-m", "posedual_tf.train", "--config", "demo_dual",
                           "--set=train.epochs=1", "--set=train.steps_per_epoch=4",
                           "--set=data.synthetic.labelled_images=12", "--set=data.synthetic.unlabelled_images=12",
                           "--set=data.synthetic.val_images=4"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    snippet, = _blocks("python")
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = [line for line in run.stdout.splitlines() if line.startswith(("0.", "1."))]
    assert len(printed) == 1 and printed[0].count("[") == 1                  # one person: score, nose
    command = next(line for block in _blocks("bash") for line in block.splitlines()
                   if line.startswith("python -m posedual_tf.predict"))
    args = command.split()
    assert args[:2] == ["python", "-m"]
    proc = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / args[args.index("--output") + 1]
    results = json.loads((out / "results.json").read_text())
    assert [r["image_id"] for r in results] == [785] and (out / "coco_000000000785.jpg.pose.png").is_file()
    assert proc.stdout.splitlines()[0] == "1 images, 1 people -> runs/predict"
