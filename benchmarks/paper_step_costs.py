"""The convolution TFLOP of one training step of every config in the paper tables, written to
``posedual_tf/tables/step_costs.json``: what ``python -m posedual_tf.reproduce --dry-run`` turns into GPU-hours.

    python benchmarks/paper_step_costs.py            # rewrites the json (about a minute on 2 cores)
    python benchmarks/paper_step_costs.py --check    # prints the differences, writes nothing

A step's arithmetic counts as in ``benchmarks/train_step.py`` (2 FLOPs per multiply-add; per network its trained
passes, supervised and one per augmentation path, and its teacher's forward pass) at the config's global batch.
The numbers are a property of the architecture and the recipe, not of the machine: re-run this when a paper
config changes its backbone, input size, batch, method or paths.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import train_step  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "posedual_tf" / "tables" / "step_costs.json"


def costs() -> dict:
    import keras

    from posedual_tf import config, paper_tables
    from posedual_tf.models import builder

    names = sorted({n for t in paper_tables.names() for n in paper_tables.load(t).configs()})
    out = {}
    for name in names:
        cfg = config.load(name)
        keras.backend.clear_session()
        net = builder.build_networks(cfg)[0]
        method = "dual" if cfg.method.name == "dual" else cfg.method.name
        flops = train_step.step_flops(method, cfg, net, cfg.train.batch_size)
        out[name] = {"tflop_per_step": round(flops / 1e12, 4), "batch": cfg.train.batch_size,
                     "image_size": list(cfg.data.image_size)}
        print(f"{name}: {out[name]['tflop_per_step']} TFLOP per step of {cfg.train.batch_size}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print the differences with the json; write nothing")
    args = parser.parse_args()
    new = {"written_by": "benchmarks/paper_step_costs.py", "configs": costs()}
    if args.check:
        old = json.loads(OUT.read_text()).get("configs", {}) if OUT.exists() else {}
        diff = {k: (old.get(k), v) for k, v in new["configs"].items() if old.get(k) != v}
        print(json.dumps(diff, indent=1) if diff else "the json is up to date")
        return
    OUT.write_text(json.dumps(new, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
