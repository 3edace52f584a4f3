"""Screenshots of a run's TensorBoard for docs/monitoring.md, taken in a real browser.

Serves ``<workdir>/tb`` with TensorBoard on 127.0.0.1 and photographs the scalars, custom-scalars and
images dashboards with headless Chromium (Debian's ``chromium`` package: ``apt-get install chromium``).

    python -m posedual_tf.train --config demo_dual --set workdir=runs/demo_monitoring   # a run to show
    python benchmarks/tensorboard_screenshots.py --workdir runs/demo_monitoring

The pictures go to ``docs/monitoring/`` (ours: listed in its ownership list; a file there we did not
write is never replaced).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from posedual_tf import files  # noqa: E402

#: (file, TensorBoard page, what it shows)
PAGES = (
    ("scalars.png", "#scalars&tagFilter=collapse", "the collapse indicators, each with its description"),
    ("custom_scalars.png", "#custom_scalars", "AP of net1/net2/ensemble on one chart, losses, collapse with the 0.1 line"),
    ("accuracy.png", "#scalars&tagFilter=accuracy", "AP per head: net1, net2 and the ensemble, a colour and legend each"),
    ("hparams.png", "#hparams", "the hparams table: the run's settings and each head's AP"),
    ("pair_grid.png", "#images", "the pair grids"),
)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60.0) -> None:
    """Poll the TensorBoard this script started on 127.0.0.1 until it answers (nothing is fetched from
    outside the machine)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"{url}: only the local TensorBoard is polled")
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"TensorBoard did not answer at {url} within {seconds:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="a finished training run (its tb/ is served)")
    ap.add_argument("--out", default=str(REPO / "docs" / "monitoring"), help="where the PNGs go")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--size", default="1920,1100", help="browser window W,H")
    ap.add_argument("--wait-ms", type=int, default=20000, help="virtual time each page gets to render")
    args = ap.parse_args()
    logdir = os.path.join(args.workdir, "tb")
    if not os.path.isdir(logdir):
        sys.exit(f"error: --workdir: {logdir} not found (a training run writes it)")
    if not os.path.exists(args.chromium):
        sys.exit(f"error: --chromium: {args.chromium} not found; install Debian's chromium (apt-get install chromium)")
    out = files.claim(args.out, "tensorboard_screenshots", setting="--out")
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
                              "--port", str(port), "--reload_interval", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/data/runs")
        time.sleep(3)                               # the first load of the event files
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            for name, page, what in PAGES:
                target = os.path.join(out, name)
                files.own(out, name)
                tmp = target + ".tmp.png"
                subprocess.run([args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                f"--window-size={args.size}", f"--virtual-time-budget={args.wait_ms}",
                                f"--screenshot={tmp}", f"http://127.0.0.1:{port}/{page}"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
                os.replace(tmp, target)
                print(f"{target}: {what} ({os.path.getsize(target) / 1e3:.0f} kB)")
    finally:
        board.terminate()
        board.wait(timeout=30)


if __name__ == "__main__":
    main()
