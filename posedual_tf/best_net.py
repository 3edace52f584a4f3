"""Which network an export writes when none is named: one rule for every export path.

The rule: **the single network with the best primary number (AP; PCKh Mean for MPII) at the last
validation of the run**, recorded as ``best_network`` in the workdir's ``train_result.json`` when the run
ends. The PoseDual ensemble (the mean heatmaps of both networks) runs both networks, twice the cost of
one: it is named beside the choice with its number and written only when asked (``--net ensemble``).
A checkpoint with no ``train_result.json`` in its folder or the folder above (a ``.pth`` file, weights
copied elsewhere, a run that has not ended) exports network 1, and says so.

The SavedModel export (CLI and :func:`posedual_tf.export_saved_model`), the TFLite export, the demo's
export and :func:`posedual_tf.predict` on a workdir all call :func:`resolve` and print what it returns.

Example:
    >>> from posedual_tf import best_net
    >>> best_net.choose({"net1": {"AP": 0.41}, "net2": {"AP": 0.43}, "ensemble": {"AP": 0.44}},
    ...                 lambda stats: stats["AP"])
    ('2', 'the better network at the last validation (net1 0.4100, net2 0.4300); the ensemble: 0.4400 (--net ensemble)')
"""
from __future__ import annotations

import json
import os

#: The file a run's end writes, holding ``best_network`` (:func:`record`).
RESULT = "train_result.json"
#: The choices of ``--net``: the rule, one network, or both networks' mean heatmaps.
CHOICES = ("best", "1", "2", "ensemble")


def choose(metrics: dict, primary) -> tuple[str, str]:
    """(``net`` value, why) of the rule for one validation's metrics (``{"net1": {...}, ...}``)."""
    nets = sorted(h for h in metrics if h.startswith("net"))
    if len(nets) <= 1:
        return "1", "the run's only network"
    scores = {h: primary(metrics[h]) for h in nets}
    best = max(nets, key=lambda h: scores[h])
    listed = ", ".join(f"{h} {scores[h]:.4f}" for h in nets)
    why = f"the better network at the last validation ({listed})"
    if "ensemble" in metrics:
        why += f"; the ensemble: {primary(metrics['ensemble']):.4f} (--net ensemble)"
    return best[3:], why


def record(metrics: dict, primary) -> dict:
    """What ``train_result.json`` holds as ``best_network``: ``{"net": ..., "why": ...}``."""
    net, why = choose(metrics, primary) if metrics else ("1", "no validation ran: network 1")
    return {"net": net, "why": why}


def result_file(checkpoint: str) -> str | None:
    """The ``train_result.json`` a checkpoint belongs to: in its folder (a workdir) or the folder above
    (``<workdir>/final``, ``<workdir>/best``); None for anything else."""
    path = os.path.abspath(os.fspath(checkpoint))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    for candidate in (folder, os.path.dirname(folder)):
        f = os.path.join(candidate, RESULT)
        if os.path.isfile(f):
            return f
    return None


def resolve(net: str, checkpoint: str, num_nets: int) -> tuple[str, str]:
    """(network, why) for ``net`` (one of :data:`CHOICES`) of ``checkpoint``: ``best`` follows the rule;
    any other value is the caller's own choice. ValueError (one line) for a choice the config lacks."""
    if net not in CHOICES:
        raise ValueError(f"--net {net}: expected one of {', '.join(CHOICES)}")
    if net == "ensemble" and num_nets != 2:
        raise ValueError("--net ensemble needs a PoseDual config (two networks)")
    if net not in ("best", "ensemble") and int(net) > num_nets:
        raise ValueError(f"--net {net}: this config has {num_nets} network(s)")
    if net != "best":
        return net, "as asked" if net != "ensemble" else "both networks' mean heatmaps, as asked"
    if num_nets == 1:
        return "1", "the run's only network"
    path = result_file(checkpoint)
    if path is None:
        return "1", f"no {RESULT} beside {os.fspath(checkpoint)}: network 1"
    try:
        with open(path) as f:
            chosen = json.load(f).get("best_network")
    except (OSError, ValueError, AttributeError):
        chosen = None
    if not isinstance(chosen, dict) or chosen.get("net") not in ("1", "2"):
        return "1", f"{path} records no best_network (a run before this rule): network 1"
    return chosen["net"], str(chosen.get("why", ""))


def describe(net: str, why: str) -> list[str]:
    """The lines an export prints about its network (each under 80 columns for scores like the above)."""
    head = "the ensemble" if net == "ensemble" else f"net {net}"
    first, _, rest = why.partition("; ")
    lines = [f"  {head}: {first}"]
    if rest:
        lines.append(f"  ({rest})")
    return lines
