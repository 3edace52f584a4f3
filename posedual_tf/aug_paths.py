"""The grammar of a MultiAugs hard path (``method.paths`` entries), without TensorFlow.

A path is ``A60`` (the batch affine only) or an optional first image-level policy (a dataset copy)
followed by batch ops, joined by ``+`` and applied left to right; ``JOCO`` and ``JCCM`` are the
MultiAugs composites. :mod:`posedual_tf.data.hard_views` builds the views.

Example:
    >>> from posedual_tf.aug_paths import parse_path
    >>> parse_path("RA+JOCO")
    Path(name='RA+JOCO', base='RA', ops=('JO', 'CO'))
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

#: Batch ops a path may chain, and the image-level policies (dataset copies) a path may start from.
BATCH_OPS = ("JC", "JO", "CO", "CM", "MU")
IMAGE_POLICIES = ("RA", "TA", "YOCORA", "YOCOTA")
#: The MultiAugs composites; written as these names they keep the reference's hole counts (oddity 4).
COMPOSITES = {"JOCO": ("JO", "CO"), "JCCM": ("JC", "CM")}
#: A path with no op: the hard view is the batch affine of the clean view.
PLAIN = "A60"


@dataclasses.dataclass(frozen=True)
class Path:
    """One hard path: an optional image-level base (dataset copy) then batch ops, left to right."""

    name: str
    base: str | None
    ops: tuple[str, ...]


def parse_path(text: str) -> Path:
    """``"JOCO"``, ``"JC"``, ``"RA+JC"``, ``"JO+CO+CM"``, ``"A60"`` -> :class:`Path`; ValueError if not."""
    if text == PLAIN:
        return Path(text, None, ())
    base, ops = None, []
    for i, part in enumerate(text.split("+")):
        if part in IMAGE_POLICIES and i == 0:
            base = part
        elif part in COMPOSITES:
            ops.extend(COMPOSITES[part])
        elif part in BATCH_OPS:
            ops.append(part)
        else:
            where = "first" if part in IMAGE_POLICIES else "known"
            raise ValueError(f"{text!r}: {part!r} is not a {where} element; expected {PLAIN}, or an optional "
                             f"first {'/'.join(IMAGE_POLICIES)} then ops from {'/'.join(BATCH_OPS)}/"
                             f"{'/'.join(COMPOSITES)} joined by '+'")
    return Path(text, base, tuple(ops))


def method_paths(m) -> list[Path]:
    """The paths of a ``MethodConfig``: ``method.paths``, or the PoseDual-era single hard view
    (RandAugment copy if ``rand_aug``, joint cutout if ``mask_joint_num > 0``)."""
    if m.paths:
        return [parse_path(p) for p in m.paths]
    base = "RA" if m.rand_aug else None
    ops = ("JC",) if m.mask_joint_num > 0 else ()
    name = "+".join(([base] if base else []) + list(ops)) or PLAIN
    return [Path(name, base, ops)]


def path_labels(paths: Sequence[Path]) -> list[str]:
    """Metric-safe, unique names of the paths (``JO+CO`` -> ``JO_CO``; repeats get ``_2``, ``_3``)."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        label = re.sub(r"[^A-Za-z0-9]", "_", p.name)
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}_{seen[label]}")
    return out


def image_policies(m) -> list[str]:
    """The dataset copies (``image_<POLICY>`` keys) the paths of ``m`` need, in first-use order."""
    out: list[str] = []
    for p in method_paths(m):
        if p.base and p.base not in out:
            out.append(p.base)
    return out
