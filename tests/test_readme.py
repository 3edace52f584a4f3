"""The README's first screen has exactly two set-up commands, and CI runs the test one."""
from __future__ import annotations

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
