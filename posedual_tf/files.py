"""Writing outputs so that nothing is left half-done and nothing we did not write is replaced.

* :func:`write_atomic` / :func:`write_json_atomic`: a file is written under a temporary name beside
  it and renamed when complete.
* :func:`replace_folder`: a folder is filled in a temporary folder beside the target and swapped in;
  an existing target is replaced only if the caller's ``is_ours`` says it wrote it.

Example:
    >>> write_json_atomic("runs/x/metrics.json", {"AP": 0.5})
    >>> replace_folder("runs/x/final", lambda tmp: net.save_weights(f"{tmp}/net1.weights.h5"),
    ...                is_ours=lambda path: True)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable


def write_atomic(path: str, data: bytes | str) -> None:
    """``path`` holds ``data`` or keeps what it held: written to ``path.tmp-PID`` and renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)                # ours: the temporary file written above
        raise


def write_json_atomic(path: str, data: Any, indent: int | None = 1) -> None:
    write_atomic(path, json.dumps(data, indent=indent))


def replace_folder(target: str, fill: Callable[[str], None], is_ours: Callable[[str], bool]) -> str:
    """Create ``target`` by calling ``fill(tmp)`` on a temporary folder beside it, then renaming.

    An existing ``target`` is swapped out and deleted only if ``is_ours(target)``; otherwise
    FileExistsError and nothing is touched. A failure removes the temporary folder and leaves
    ``target`` as it was.
    """
    target = os.path.normpath(target)
    if os.path.lexists(target) and not is_ours(target):
        raise FileExistsError(f"{target}: exists and was not written by this tool; not replaced")
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        fill(tmp)
        old = None
        if os.path.lexists(target):
            if not is_ours(target):       # something appeared meanwhile
                raise FileExistsError(f"{target}: exists and was not written by this tool; not replaced")
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=parent)
            os.replace(target, os.path.join(old, "previous"))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)        # ours: made above
        raise
    if old:
        shutil.rmtree(old)                            # ours: holds only the target moved aside above
    return target
