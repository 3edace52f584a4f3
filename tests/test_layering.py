"""The shape of the code: data flows down. Read from the sources' imports (every import, also those
inside functions), so a new arrow the wrong way fails here before anyone draws the house."""
from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports, by its dotted name (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _files(folder: str) -> list[pathlib.Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_posedual_tf_never_imports_tfrecords_tools():
    """tfrecords_tools (the converters' command lines) stands on posedual_tf; never the other way."""
    wrong = [f"{p.relative_to(REPO)}: {m}" for p in _files("posedual_tf") for m in _imports(p)
             if m == "tfrecords_tools" or m.startswith("tfrecords_tools.")]
    assert not wrong, wrong


def test_no_arrow_runs_back_up():
    """codec/geometry import nothing above them; models/ never data/; evaluation/ never methods/."""
    rules = {"posedual_tf/codec.py": ("posedual_tf.data", "posedual_tf.models", "posedual_tf.methods",
                                      "posedual_tf.evaluation", "posedual_tf.task", "posedual_tf.training"),
             "posedual_tf/geometry.py": ("posedual_tf.data", "posedual_tf.models", "posedual_tf.methods",
                                         "posedual_tf.evaluation", "posedual_tf.codec", "posedual_tf.task"),
             "posedual_tf/models": ("posedual_tf.data",),
             "posedual_tf/evaluation": ("posedual_tf.methods",)}
    wrong = []
    for where, banned in rules.items():
        paths = [REPO / where] if where.endswith(".py") else _files(where)
        wrong += [f"{p.relative_to(REPO)}: {m}" for p in paths for m in _imports(p) if m.startswith(banned)]
    assert not wrong, wrong


def test_methods_and_pipelines_take_values_not_the_config():
    """The training step and the input pipelines read settings objects (methods/settings.py,
    data/settings.py); only those objects' ``from_config`` and the factories read a Config."""
    readers = ["posedual_tf/methods/base.py", "posedual_tf/methods/cons.py", "posedual_tf/methods/dual.py",
               "posedual_tf/methods/supervised.py", "posedual_tf/data/pipeline.py", "posedual_tf/data/service.py"]
    wrong = []
    for rel in readers:
        tree = ast.parse((REPO / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in ("Config", "cfg"):
                wrong.append(f"{rel}:{node.lineno}: {node.id}")
            elif isinstance(node, ast.arg) and node.arg == "cfg":
                wrong.append(f"{rel}:{node.lineno}: argument cfg")
    assert not wrong, wrong


def test_every_mutant_still_finds_the_code_it_breaks():
    """A mutant whose original text moved away would report an error, not guard anything: each original
    occurs exactly once in its file (tests/mutants.py), checked here on every run of the suite."""
    from tests.mutants import MUTANTS

    lost = [f"{m.name}: {m.file} holds it {(REPO / m.file).read_text().count(m.original)} times"
            for m in MUTANTS if (REPO / m.file).read_text().count(m.original) != 1]
    assert not lost, lost
