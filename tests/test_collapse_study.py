"""benchmarks/collapse_study.py --quick: every row trains, is evaluated on the validation and the
unlabelled people each epoch, and its curves come out whole (no accuracy is asserted)."""
from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_quick_study_has_every_row_with_finite_curves(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/collapse_study.py"), "--quick",
                           "--workdir", str(tmp_path / "study"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from collapse_study import QUICK, ROWS

    out = json.loads((tmp_path / "out/collapse_study.json").read_text())
    assert list(out["curves"]) == [r.name for r in ROWS]
    for name, c in out["curves"].items():
        assert c["step"] == [QUICK.steps_per_epoch * (e + 1) for e in range(QUICK.epochs)], name
        for label in ("val AP", "unlabelled AP", "unlabelled mean peak", "unlabelled peaks < 0.1"):
            (seed,) = c[label]
            assert len(seed) == QUICK.epochs and all(math.isfinite(v) for v in seed), (name, label)
        if name != "Supervised":        # the training-time indicator of the consistency rows
            (train,) = c["collapse_indicator_train"]
            assert len(train) == QUICK.epochs and all(math.isfinite(v) for v in train), name
    page = (tmp_path / "out/collapse_study.md").read_text()
    assert all(f"| {r.name} |" in page for r in ROWS) and (tmp_path / "out/collapse_study.png").stat().st_size > 0
    # a second run reuses every finished run of the same settings instead of training again
    again = subprocess.run([sys.executable, str(REPO / "benchmarks/collapse_study.py"), "--quick",
                            "--workdir", str(tmp_path / "study"), "--out", str(tmp_path / "out2")],
                           capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0 and json.loads((tmp_path / "out2/collapse_study.json").read_text())["reused_runs"] == len(ROWS)
