"""Every numeric flag of every command declares its domain, and a value outside it is one line and exit 1
before anything runs; every flag that other flags can make meaningless says so in one line (issue #41, rule 3).
The out-of-domain values are generated here from each flag's own definition (bounds, type), for every command."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

COMMANDS = ["posedual_tf.train", "posedual_tf.evaluate", "posedual_tf.export", "posedual_tf.predict",
            "posedual_tf.rest_request", "posedual_tf.reproduce",
            "posedual_tf.convert_torch", "posedual_tf.data_service", "tfrecords_tools.coco", "tfrecords_tools.aic",
            "tfrecords_tools.mpii", "tfrecords_tools.detections", "tfrecords_tools.synthetic", "tfrecords_tools.inspect"]

TABLE = """
import importlib, json, sys
from posedual_tf import cli
m = importlib.import_module(sys.argv[1])
cli.define_common_flags()
m.define_flags()
ours = {sys.argv[1], "posedual_tf.cli", "tfrecords_tools.common"}
table = {}
for module in ours:
    for f in cli.FLAGS.get_flags_for_module(module):
        table[f.name] = {"type": f.flag_type(), "lower": getattr(f.parser, "lower_bound", None),
                         "upper": getattr(f.parser, "upper_bound", None), "default": f.default,
                         "unbounded": cli.UNBOUNDED.get(f.name), "help": f.help,
                         "choices": list(getattr(f.parser, "enum_values", None) or [])}
rules = [{"flag": r.flag, "why": r.why, "example": list(r.example)} for r in cli.RULES]
print(json.dumps({"flags": table, "rules": rules}))
"""


def _table(command):
    proc = subprocess.run([sys.executable, "-c", TABLE, command], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _one_line_error(command, args, flag):
    proc = subprocess.run([sys.executable, "-m", command, *args], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, (command, args, proc.returncode, proc.stderr[-1500:])
    assert lines[0].startswith("error: ") and f"--{flag}" in lines[0], (command, args, lines)
    return lines[0]


def _outside(info):
    """Values outside a numeric flag's domain, from its definition."""
    integer = info["type"] == "int"
    step = 1 if integer else 0.5
    values = ["abc"] + (["1.5"] if integer else ["nan", "inf", "-inf"])
    if info["lower"] is not None:
        values.append(str(info["lower"] - step))
    if info["upper"] is not None:
        values.append(str(info["upper"] + step))
    return values


@pytest.mark.parametrize("command", COMMANDS)
def test_every_numeric_flag_declares_its_domain_and_refuses_values_outside_it(command):
    table = _table(command)
    numeric = {n: i for n, i in table["flags"].items() if i["type"] in ("int", "float")}
    undeclared = [n for n, i in numeric.items() if i["lower"] is None and i["upper"] is None and not i["unbounded"]]
    assert not undeclared, f"{command}: numeric flags without a domain: {undeclared}"
    for name, info in numeric.items():
        for value in _outside(info):
            _one_line_error(command, [f"--{name}={value}"], name)


def _domain(info) -> str:
    if info["choices"]:
        return " / ".join(info["choices"])
    if info["type"] in ("int", "float"):
        if info["unbounded"]:
            return f"any finite number ({info['unbounded']})"
        lo, hi = info["lower"], info["upper"]
        kind = "integer" if info["type"] == "int" else "finite number"
        return f"{kind} " + (f"in [{lo}, {hi}]" if lo is not None and hi is not None else
                             f">= {lo}" if lo is not None else f"<= {hi}")
    return {"bool": "true / false (--flag, --noflag)", "multi string": "text, repeatable",
            "list": "comma-separated list"}.get(info["type"], "text")


def render() -> str:
    """docs/flags.md: every flag of every command, its domain and when it applies."""
    out = ["# Every command's flags", "",
           "Generated from the flag definitions by `python tests/test_cli_flags.py > docs/flags.md`;",
           "`tests/test_cli_flags.py` checks that it is current, and gives every numeric flag values outside",
           "its domain (each is one line and exit 1, before anything runs). Every command also takes `--debug`",
           "and `--verbose`; a flag given where it does not apply is one line too (the last column). The",
           "defaults are in each command's `--help` (some depend on the machine, e.g. `--workers`).", ""]
    for command in COMMANDS:
        table = _table(command)
        rules = {r["flag"]: r["why"] for r in table["rules"]}
        out += [f"## `python -m {command}`", "", "| flag | domain | applies |", "|---|---|---|"]
        for name, info in sorted(table["flags"].items()):
            if name in ("debug", "verbose"):
                continue
            cell = lambda t: t.replace("|", "\\|")  # noqa: E731
            out.append(f"| `--{name}` | {cell(_domain(info))} | {cell(rules.get(name, 'always'))} |")
        out.append("")
    return "\n".join(out)


def test_docs_flags_table_is_current():
    from tests.conftest import REPO

    assert (REPO / "docs" / "flags.md").read_text() == render() + "\n", \
        "docs/flags.md is stale: python tests/test_cli_flags.py > docs/flags.md"


VALID = {"version": "3", "calibration": "data/val", "calibration-people": "10", "precision": "float16",
         "detector-class": "1", "detector-threshold": "0.5", "min-box-score": "0.5", "min-hog-score": "0.5",
         "dispatcher": "127.0.0.1:5050", "worker-address": "127.0.0.1:5051", "limit": "3"}


@pytest.mark.parametrize("command", ["posedual_tf.export", "posedual_tf.predict", "posedual_tf.data_service",
                                     "tfrecords_tools.inspect"])
def test_every_flag_that_other_flags_make_meaningless_is_one_line(command):
    rules = _table(command)["rules"]
    assert rules
    for rule in rules:
        flag = rule["flag"]
        given = [f"--{flag}"] if flag not in VALID else [f"--{flag}={VALID[flag]}"]
        line = _one_line_error(command, given + rule["example"], flag)
        assert line == f"error: --{flag}: {rule['why']}; nothing was done"


@pytest.mark.parametrize("command, args", [
    ("posedual_tf.predict", ["--detector-threshold=2"]),
    ("posedual_tf.predict", ["--detector-threshold=nan"]),
    ("posedual_tf.predict", ["--detector-threshold=0.3"]),
    ("posedual_tf.export", ["--calibration-people=-1"]),
    ("posedual_tf.export", ["--calibration=data/val"]),
    ("posedual_tf.export", ["--version=3", "--format=tflite"]),
])
def test_the_issue_cases(command, args):
    """The examples of issue #41: each is one line naming its flag."""
    _one_line_error(command, args, args[0][2:].split("=")[0])


if __name__ == "__main__":
    print(render())
