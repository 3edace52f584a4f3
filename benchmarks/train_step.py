"""Train-step time and peak memory: Supervised, PoseCons, PoseDual, the MultiAugs dual step (4 paths: JC,
JO, JOCO, JCCM) with ResNet-18 at 256x192, their fused schedules, and a PyTorch PoseDual step of the same
shape, all in one run.

    python benchmarks/train_step.py                    # every method x batch {32, 8} x {fp32, bf16}
    python benchmarks/train_step.py --methods dual dual_pernet dual_fused torch_dual multiaugs multiaugs_pernet \
        multiaugs_fused --batches 32
    python benchmarks/train_step.py --one dual 32 mixed_bfloat16 --steps 3
    python benchmarks/train_step.py --precision-report [--steps 3]     # #45: fp32 vs bf16 vs ceiling vs torch

``--precision-report``: one PoseDual step (ResNet-18 256x192, batch 32) in float32 and bfloat16 (and
float16 where the CPU has float16 arithmetic: avx512_fp16 or amx_fp16), the dense matmul ceiling of
each, PyTorch's PoseDual step in its two precisions where torch is installed, and what
``train.mixed_precision=auto`` chooses (measured afresh); the last line is JSON (``fp32_s``, ``bf16_s``,
``ceiling_*_tflops``, ``mfu_*`` = the step's TFLOP/s over its precision's ceiling, ``auto_choice``,
``faster``, ``vs_torch_best`` = PyTorch's faster step over ours in auto's choice).

Each combination runs in its own process (clean precision policy and peak RSS). Two untimed steps (the
first traces; the second still grows the allocator's pools), then the median of ``--steps`` timed steps.
Images/s counts the labelled batch for Supervised and the unlabelled batch for the consistency methods
(one image pair = one row of the batch), on fixed random inputs.

``*_pernet`` / ``*_fused`` are the same method with ``train.pass_schedule=per_network`` / ``fused``. ``torch_dual`` is
``benchmarks/torch_dual_step.py`` (fp32 NCHW as the reference ships; bf16 = autocast + channels_last).
TFLOP/s counts the step's convolution arithmetic from the model (2 FLOPs per multiply-add; a trained
pass is its forward, the weight gradient and the input gradient except the first layer's), and is
compared with this machine's dense matmul throughput measured in the same run (``--matmul``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import peak_rss_mb  # noqa: E402

CONFIGS = {"supervised": "coco1k_sup", "cons": "coco1k_cons", "dual": "coco1k_dual",
           "multiaugs": "coco1k_dual_multiaugs"}
SCHEDULES = {"_pernet": "per_network", "_fused": "fused"}      # train.pass_schedule variants
VARIANTS = dict(CONFIGS, torch_dual="", **{m + suffix: CONFIGS[m] for m in ("cons", "dual", "multiaugs")
                                            for suffix in SCHEDULES})
_NAMES = {"supervised": "Supervised", "cons": "PoseCons", "dual": "PoseDual", "multiaugs": "MultiAugs dual, 4 paths",
          "torch_dual": "PyTorch PoseDual"}


def split_variant(method: str) -> tuple[str, list[str]]:
    """``dual_fused`` -> (``dual``, [``train.pass_schedule=fused``])."""
    for suffix, schedule in SCHEDULES.items():
        if method.endswith(suffix):
            return method.removesuffix(suffix), [f"train.pass_schedule={schedule}"]
    return method, []


def label(method: str) -> str:
    base, sets = split_variant(method)
    return _NAMES[base] + (f", {sets[0].split('=')[1]}" if sets else "")


def fake_batches(method: str, batch: int, shipped: str = "uint8"):
    """Fixed random inputs of a ResNet-18 256x192 step (labelled, or (labelled, unlabelled)) as the
    pipeline ships them: uint8 crops and crop-space joints (the step normalises and encodes targets);
    ``shipped="float32"``: normalised float32 crops and float32 targets, as it shipped them before #28."""
    import numpy as np

    rng = np.random.default_rng(0)
    if shipped == "float32":
        lab = {"image": rng.normal(size=(batch, 256, 192, 3)).astype("float32"),
               "target": rng.uniform(size=(batch, 64, 48, 24)).astype("float32"),
               "weight": np.ones((batch, 24), "float32")}
        unl = {"image": rng.normal(size=(batch, 256, 192, 3)).astype("float32")}
    else:
        lab = {"image": rng.integers(0, 256, size=(batch, 256, 192, 3)).astype("uint8"),
               "joints": (rng.uniform(size=(batch, 24, 2)) * [192, 256]).astype("float32"),
               "vis": (rng.uniform(size=(batch, 24)) > 0.3).astype("float32")}
        unl = {"image": rng.integers(0, 256, size=(batch, 256, 192, 3)).astype("uint8")}
    unl["weight"] = np.ones((batch, 24), "float32")
    return lab if method == "supervised" else (lab, unl)


def build_step(method: str, batch: int, precision: str, jit: bool = False):
    """(config, compiled method, fake batch) of a benchmark variant, under its precision policy; the
    step compiled with XLA when ``jit``."""
    import keras

    keras.mixed_precision.set_global_policy("float32" if precision == "none" else precision)
    from posedual_tf import config, methods
    from posedual_tf.models import builder

    base, schedule = split_variant(method)
    # one BatchNorm group per step whatever the batch: the step of one device, as these numbers always were
    cfg = config.load(VARIANTS[method], [f"train.mixed_precision={precision}", f"train.batch_size={batch}",
                                         "train.replica_batch=0"] + schedule)
    m = methods.build_method(cfg, builder.build_networks(cfg), labelled_ids=[1, 2, 3, 4, 5, 6, 11] + list(range(14, 24)))
    m.compile(optimizer=methods.make_optimizer(cfg, 100), jit_compile=jit)
    return cfg, m, fake_batches(base, batch)


def conv_macs(net) -> tuple[int, int]:
    """(multiply-adds of one image's forward pass over every convolution, those of the first layer)."""
    import keras

    per_layer = []
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            shape = layer.input.shape                   # each input pixel meets the whole kernel
        elif isinstance(layer, keras.layers.Conv2D):
            shape = layer.output.shape
        else:
            continue
        kh, kw, a, b = layer.kernel.shape
        per_layer.append(shape[1] * shape[2] * kh * kw * a * b)
    return sum(per_layer), per_layer[0]


def step_flops(method: str, cfg, net, batch: int) -> float:
    """Convolution FLOPs of one step: per network, its trained passes (sup, each path) and its teacher."""
    from posedual_tf import aug_paths

    fwd, first = conv_macs(net)
    trained = 3 * fwd - first
    if method.startswith("supervised"):
        per_net = trained
    else:
        per_net = fwd + trained * (1 + len(aug_paths.method_paths(cfg.method)))
    nets = 2 if method.startswith(("dual", "multiaugs", "torch")) else 1
    return 2.0 * batch * nets * per_net


def matmul_tflops(float16: bool = False) -> dict:
    """Dense 8192^2 matmul throughput of TensorFlow on this machine, fp32 and bf16 (and fp16; best of 3)."""
    import tensorflow as tf

    out = {}
    for dtype in (tf.float32, tf.bfloat16) + ((tf.float16,) if float16 else ()):
        a = tf.cast(tf.random.normal([8192, 8192]), dtype)
        f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, a)[:1, :1], tf.float32)))
        f()
        best = min(_timed(f) for _ in range(3))
        out[dtype.name] = 2 * 8192 ** 3 / best / 1e12
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one(method: str, batch: int, precision: str, steps: int, deterministic: bool = False, jit: bool = False) -> dict:
    import keras
    import tensorflow as tf

    if method == "torch_dual":
        import torch_dual_step

        r = torch_dual_step.time_step(batch, precision, steps + 1)
        times = r["step_times"][1:]
        keras.mixed_precision.set_global_policy("float32")
        from posedual_tf import config
        from posedual_tf.models import builder

        cfg = config.load("coco1k_dual")
        flops = step_flops("dual", cfg, builder.build_networks(cfg)[0], batch)
        first = r["first_step_s"]
    else:
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        cfg, m, data = build_step(method, batch, precision, jit)
        first = _timed(lambda: m.train_on_batch(data))
        m.train_on_batch(data)
        times = [_timed(lambda: m.train_on_batch(data)) for _ in range(steps)]
        flops = step_flops(split_variant(method)[0], cfg, m.nets[0], batch)
    per_step = statistics.median(times)
    return {"method": method, "batch": batch, "precision": precision, "deterministic": deterministic, "jit": jit,
            "s_per_step": round(per_step, 3), "step_times": [round(t, 2) for t in times],
            "images_per_s": round(batch / per_step, 2), "first_step_s": round(first, 1),
            "tflop_per_step": round(flops / 1e12, 3), "tflops": round(flops / per_step / 1e12, 3),
            "peak_rss_mb": round(peak_rss_mb())}


def _run(args: list[str]) -> dict | str:
    out = subprocess.run([sys.executable, __file__] + args, capture_output=True, text=True)
    if out.returncode:
        lines = out.stderr.strip().splitlines()
        return f"failed: {lines[-1] if lines else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_has_float16() -> bool:
    """Float16 arithmetic in the CPU (AVX512-FP16, AMX-FP16): elsewhere TensorFlow emulates it, far slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_fp16", "amx_fp16"})


def precision_report(steps: int) -> None:
    """#45's numbers in one run (module docstring); the last line is JSON."""
    import importlib.util

    from posedual_tf import config, precision

    fp16 = cpu_has_float16()
    peak = _run(["--matmul"] + (["--float16"] if fp16 else []))
    if isinstance(peak, str):
        sys.exit(f"matmul measurement {peak}")
    names = {"none": "fp32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}
    ceiling = {"none": peak["float32"], "mixed_bfloat16": peak["bfloat16"], "mixed_float16": peak.get("float16")}
    policies = ["none", "mixed_bfloat16"] + (["mixed_float16"] if fp16 else [])
    ours = {p: _run(["--one", "dual", "32", p, "--steps", str(steps)]) for p in policies}
    has_torch = importlib.util.find_spec("torch") is not None
    torch = {p: _run(["--one", "torch_dual", "32", p, "--steps", str(steps)]) for p in policies[:2]} if has_torch else {}
    cfg = config.load("coco1k_dual")
    spec = precision.probe_spec(dataclasses.asdict(cfg.model), cfg.data.image_size, cfg.data.heatmap_size,
                                cfg.train.replica_batch or cfg.train.batch_size)
    probe = precision._measure_elsewhere(spec)                  # afresh: no cached answer
    auto = min(probe, key=probe.get)
    print("dense matmul ceiling: " + ", ".join(f"{names[p]} {ceiling[p]:.3f}" for p in policies) + " TFLOP/s")
    out = {"cpu": precision.machine_key().get("model", ""), "steps": steps}
    if not fp16:
        print("fp16: not measured: this CPU has no float16 arithmetic (avx512_fp16, amx_fp16); TensorFlow would emulate it")
        out["fp16_s"] = None
    for p in policies:
        r, short = ours[p], names[p]
        if isinstance(r, str):
            print(f"ours {short}: {r}")
            out[f"{short}_s"] = None
            continue
        mfu = r["tflops"] / ceiling[p]
        print(f"ours {short}: {r['s_per_step']} s/step ({' '.join(map(str, r['step_times']))}), {r['tflops']} TFLOP/s "
              f"of {r['tflop_per_step']} TFLOP/step, {100 * mfu:.1f} % of the {short} matmul ceiling")
        out.update({f"{short}_s": r["s_per_step"], f"ceiling_{short}_tflops": round(ceiling[p], 4),
                    f"mfu_{short}": round(mfu, 3)})
    for p, r in torch.items():
        print(f"PyTorch PoseDual {names[p]}: " + (r if isinstance(r, str) else f"{r['s_per_step']} s/step"))
        out[f"torch_{names[p]}_s"] = None if isinstance(r, str) else r["s_per_step"]
    timed = {p: r["s_per_step"] for p, r in ours.items() if not isinstance(r, str)}
    faster = min((p for p in timed if p in probe), key=timed.get)       # of the two that auto chooses from on a CPU
    print(f"auto's probe: bf16 {probe['none'] / probe['mixed_bfloat16']:.2f}x fp32 -> {auto}; the faster step: {faster}")
    out.update({"probe_s": {k: round(v, 4) for k, v in probe.items()}, "auto_choice": auto, "faster": faster,
                "auto_is_faster": auto == faster})
    best_torch = [r["s_per_step"] for r in torch.values() if not isinstance(r, str)]
    if best_torch and auto in timed:
        out["vs_torch_best"] = round(min(best_torch) / timed[auto], 3)
        print(f"PyTorch's best / ours in auto's choice: {out['vs_torch_best']:.2f}x")
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=3, metavar=("METHOD", "BATCH", "PRECISION"))
    ap.add_argument("--matmul", action="store_true", help="print the dense matmul throughput only")
    ap.add_argument("--float16", action="store_true", help="with --matmul: float16 too")
    ap.add_argument("--precision-report", action="store_true",
                    help="#45: PoseDual batch 32 in each precision, ceilings, PyTorch, auto's choice; JSON last")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--deterministic", action="store_true", help="with --one: enable_op_determinism()")
    ap.add_argument("--jit", action="store_true", help="with --one: the step compiled with XLA (jit_compile=True)")
    ap.add_argument("--methods", nargs="+", choices=sorted(VARIANTS), default=list(CONFIGS))
    ap.add_argument("--batches", nargs="+", type=int, default=[32, 8])
    ap.add_argument("--precisions", nargs="+", default=["none", "mixed_bfloat16"])
    args = ap.parse_args()
    if args.matmul:
        print(json.dumps(matmul_tflops(args.float16)))
        return
    if args.precision_report:
        precision_report(args.steps)
        return
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.one[2], args.steps, args.deterministic, args.jit)))
        return
    peak = _run(["--matmul"])
    if isinstance(peak, str):
        sys.exit(f"matmul measurement {peak}")
    print(f"dense 8192^2 matmul on this machine: fp32 {peak['float32']:.3f}, bf16 {peak['bfloat16']:.3f} TFLOP/s\n")
    print("| method | batch | precision | s/step (median) | steps | images/s | conv TFLOP/step | TFLOP/s "
          "| of matmul | peak RSS MB |")
    print("|---" * 10 + "|")
    rows = {}
    for method in args.methods:
        for batch in args.batches:
            for precision in args.precisions:
                r = _run(["--one", method, str(batch), precision, "--steps", str(args.steps)])
                prec = "fp32" if precision == "none" else "bf16"
                if isinstance(r, str):
                    print(f"| {label(method)} | {batch} | {prec} | {r} |", flush=True)
                    continue
                rows[method, batch, precision] = r
                share = r["tflops"] / peak["float32" if precision == "none" else "bfloat16"]
                print(f"| {label(method)} | {batch} | {prec} | {r['s_per_step']} | "
                      f"{' '.join(map(str, r['step_times']))} | {r['images_per_s']} | {r['tflop_per_step']} | "
                      f"{r['tflops']} | {100 * share:.0f} % | {r['peak_rss_mb']} |", flush=True)
    ratios = []
    for (method, batch, precision), r in rows.items():
        prec = "fp32" if precision == "none" else "bf16"
        torch = rows.get(("torch_dual", batch, precision))
        if torch and method != "torch_dual":
            ratios.append(f"PyTorch PoseDual / {label(method)}, batch {batch} {prec}: "
                          f"{torch['s_per_step'] / r['s_per_step']:.2f}x")
        dual = rows.get(("dual", batch, precision))
        if dual and method.startswith("multiaugs"):
            ratios.append(f"{label(method)} / PoseDual, batch {batch} {prec}: "
                          f"{r['s_per_step'] / dual['s_per_step']:.2f}x")
    if ratios:
        print("\n" + "\n".join(ratios))


if __name__ == "__main__":
    main()
