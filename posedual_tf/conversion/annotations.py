"""Reading annotation files strictly: a missing file, a malformed field, a non-finite number or a bad box
is a one-line :class:`~posedual_tf.conversion.writer.ConversionError` (the file) or a reason to skip and list one
annotation (the person), never a crash or a silent guess. Shared by every converter.

Example:
    >>> from posedual_tf.conversion.annotations import box_problem
    >>> box_problem([10, 20, 30, 40]), box_problem([10, 20, -1, 40])
    ('', 'bbox has no area (w or h <= 0)')
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from posedual_tf import cli, files
from posedual_tf.conversion.writer import ConversionError


def load_json(path: str) -> Any:
    """Read an annotation file; a missing or malformed file is a one-line ConversionError."""
    try:
        return files.read_json(path, "an annotation file")
    except FileNotFoundError:
        raise ConversionError(f"{path}: file not found") from None
    except (files.BadFileError, OSError) as e:
        raise ConversionError(cli.one_line(e)) from None


def field(obj: dict, key: str, path: str, where: str = "", types: type | tuple = object) -> Any:
    """``obj[key]`` or a ConversionError naming the file, the place and the field."""
    if not isinstance(obj, dict) or key not in obj:
        raise ConversionError(f"{path}: {where + ': ' if where else ''}missing field '{key}'")
    value = obj[key]
    if not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise ConversionError(f"{path}: {where + ': ' if where else ''}field '{key}' should be "
                              f"{names}, got {type(value).__name__}")
    return value


def integer(obj: dict, key: str, path: str, where: str = "") -> int:
    """``obj[key]`` as an int (an int, or a float with an integral value), or a ConversionError naming
    the file, the place and the field (ids such as ``"abc"``, ``null`` or ``"person"`` are errors)."""
    value = field(obj, key, path, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ConversionError(f"{path}: {where + ': ' if where else ''}field '{key}' should be an integer, "
                              f"got {json.dumps(value)[:40]}")
    return int(value)


def numbers(values, count: int) -> np.ndarray | None:
    """``values`` as float64 if it is a list of ``count`` finite numbers, else None (strings, NaN, inf, bools)."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    out = np.asarray(values, np.float64)
    return out if np.isfinite(out).all() else None


def box_problem(box) -> str:
    """'' for 4 finite numbers x, y, w, h with w, h > 0, else the reason a box is skipped."""
    b = numbers(box, 4)
    if b is None:
        return "bbox is not 4 finite numbers"
    if b[2] <= 0 or b[3] <= 0:
        return "bbox has no area (w or h <= 0)"
    return ""


def keypoints_problem(values, num_joints: int, visibility=(0, 1, 2)) -> str:
    """'' for ``3 * num_joints`` finite numbers whose visibilities are in ``visibility``, else the reason."""
    k = numbers(values, 3 * num_joints)
    if k is None:
        return "keypoints are not finite numbers" if isinstance(values, list) and len(values) == 3 * num_joints \
            else f"keypoints are not {3 * num_joints} numbers"
    if not np.isin(k[2::3], visibility).all():
        return f"visibility not in {{{', '.join(map(str, visibility))}}}"
    return ""
