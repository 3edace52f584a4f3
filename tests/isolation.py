"""Each test module runs in a child pytest process, so that a native crash (a segfault or abort in
TensorFlow, XLA or oneDNN) is one failed test naming the signal, and the suite goes on.

The parent collects as usual. At a module's first test it starts ``python -m pytest`` on the module's
selected tests, with ``POSEDUAL_TEST_CHILD`` naming a report file; the child appends each test's start
and its reports (pytest's own serialised form) there. The parent replays them as if the tests had run
in it. When the child dies by a signal, the test it had started is reported failed with the signal and
the end of the child's output, and a new child takes the module's remaining tests. Each child gets its
own ``--basetemp`` under the parent's. ``--no-isolation`` runs everything in one process (a native crash
then ends the run, as plain pytest does). Hooks are imported by ``tests/conftest.py``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

CHILD_ENV = "POSEDUAL_TEST_CHILD"
_OUTPUT_TAIL = 40       # lines of a dead child's output shown with its failure
_RUNNER_FRAMES = ("/_pytest/", "/pluggy/", "<frozen runpy>", "/pytest/__main__.py")   # left out of that output


def pytest_addoption(parser):
    parser.addoption("--no-isolation", action="store_true", default=False,
                     help="run every test module in this process, not in a child (a native crash ends the run)")


def _parent(config) -> bool:
    return not os.environ.get(CHILD_ENV) and not config.getoption("no_isolation")


# ------------------------------------------------------------------------------------------ the child side

def _child_write(record: dict) -> None:
    with open(os.environ[CHILD_ENV], "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pytest_runtest_logstart(nodeid, location):
    if os.environ.get(CHILD_ENV):
        _child_write({"start": nodeid})


def pytest_runtest_logreport(report):
    if os.environ.get(CHILD_ENV):
        config = _CHILD_CONFIG[0]
        _child_write({"report": config.hook.pytest_report_to_serializable(config=config, report=report)})


_CHILD_CONFIG: list = []


def pytest_configure(config):
    if os.environ.get(CHILD_ENV):
        _CHILD_CONFIG[:] = [config]


# ----------------------------------------------------------------------------------------- the parent side

def _signal_name(rc: int) -> str:
    try:
        return f"{signal.Signals(-rc).name} (signal {-rc})"
    except ValueError:
        return f"signal {-rc}"


def _child_command(config, nodeids: list[str], basetemp: str) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--basetemp={basetemp}", f"--rootdir={config.rootpath}"]
    if config.getoption("maxfail"):
        cmd.append(f"--maxfail={config.getoption('maxfail')}")
    if config.getoption("capture") == "no":
        cmd.append("-s")
    return cmd + nodeids


def _run_child(config, items, state) -> dict:
    """Runs ``items`` (one module's) in children until each has its reports, or a crash report."""
    results: dict[str, list] = {}
    pending = list(items)
    while pending:
        state["children"] += 1
        tag = f"child-{state['children']}"
        root = os.path.join(str(config._tmp_path_factory.getbasetemp()), "isolation")
        os.makedirs(root, exist_ok=True)
        report_file, log_file = os.path.join(root, tag + ".jsonl"), os.path.join(root, tag + ".log")
        env = dict(os.environ, **{CHILD_ENV: report_file})
        with open(log_file, "wb") as log:
            rc = subprocess.run(_child_command(config, [i.nodeid for i in pending], os.path.join(root, tag)),
                                cwd=str(config.rootpath), env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        started, reports = None, {}
        if os.path.exists(report_file):
            with open(report_file, encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    if "start" in rec:
                        started = rec["start"]
                        reports.setdefault(started, [])
                    else:
                        rep = rec["report"]
                        reports.setdefault(rep["nodeid"], []).append(rep)
        with open(log_file, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if not any(s in line for s in _RUNNER_FRAMES)]
        tail = "".join(lines[-_OUTPUT_TAIL:])
        crashed = None
        if rc < 0 and started is not None and not any(r.get("when") == "teardown" for r in reports[started]):
            crashed = started
        before = len(pending)
        for i in list(pending):
            if i.nodeid == crashed:
                results[i.nodeid] = ("crash", f"the test's process died with {_signal_name(rc)}: a native crash in "
                                     f"a child process (tests/isolation.py); the suite goes on. The child's "
                                     f"last output ({log_file}):\n{tail}")
                pending.remove(i)
                break
            if any(r.get("when") == "teardown" for r in reports.get(i.nodeid, [])):     # complete
                results[i.nodeid] = ("reports", reports[i.nodeid])
                pending.remove(i)
        if crashed is None or len(pending) == before:       # done, or a child that ran none of them
            maxfail = config.getoption("maxfail")
            stopped = maxfail and sum(r.get("outcome") == "failed" for rs in reports.values() for r in rs) >= maxfail
            for i in pending:
                if not stopped:
                    results[i.nodeid] = ("crash", f"not run by its child process (exit code {rc}"
                                         f"{', ' + _signal_name(rc) if rc < 0 else ''}); its last output "
                                         f"({log_file}):\n{tail}")
            pending = []
    return results


def _replay(item, result) -> None:
    from _pytest.reports import TestReport

    kind, payload = result
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    if kind == "reports":
        for data in payload:
            rep = item.config.hook.pytest_report_from_serializable(config=item.config, data=data)
            if rep.skipped and isinstance(rep.longrepr, list):      # (path, line, reason), a list after JSON
                rep.longrepr = tuple(rep.longrepr)
            item.ihook.pytest_runtest_logreport(report=rep)
    else:
        rep = TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, "failed", payload, "call",
                         [], 0.0)
        item.ihook.pytest_runtest_logreport(report=rep)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    config = item.config
    if not _parent(config):
        return None
    state = config.stash.setdefault(_STATE, {"children": 0, "results": {}, "sent": set()})
    if item.nodeid not in state["sent"]:
        module = [i for i in item.session.items if i.path == item.path and i.nodeid not in state["sent"]]
        state["sent"].update(i.nodeid for i in module)
        state["results"].update(_run_child(config, module, state))
    result = state["results"].pop(item.nodeid, None)
    _replay(item, result or ("crash", "no report came back from the test's child process (tests/isolation.py)"))
    return True


_STATE = pytest.StashKey[dict]()
