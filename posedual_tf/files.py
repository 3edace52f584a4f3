"""Writing outputs so that nothing is left half-done and nothing we did not write is replaced.

* :func:`write_atomic` / :func:`write_json_atomic`: a file is written under a temporary name beside
  it and renamed when complete.
* :func:`replace_folder`: a folder is filled in a temporary folder beside the target and swapped in;
  an existing target is replaced only if the caller's ``is_ours`` says it wrote it.
* The ownership rule (:func:`claim`, :func:`own`, :func:`owned_by`): a folder a tool writes into carries
  ``.posedual_tf.json``, the list of the names posedual_tf wrote there and which tool wrote the folder.
  A name that exists and is not on the list is never replaced or deleted; a folder that holds files
  and no list is refused with one line naming it. Converted datasets follow the same rule through
  their manifest (``PREFIX.json`` lists its shards).
* :func:`inside`: a path taken from data (a file name in an annotation file) resolved inside the
  folder it is relative to, or None.
* :func:`lock` and :func:`writing`: one writer per folder (a second command writing there is refused at
  once, in one line naming the first; a lock left by a killed command is taken over, saying so).

Example:
    >>> from posedual_tf.files import claim, write_json_atomic, replace_folder, own
    >>> import os, tempfile
    >>> run = claim(os.path.join(tempfile.mkdtemp(), "x"), "evaluate")   # new, empty, or evaluate's own folder
    >>> write_json_atomic(own(run, "metrics.json"), {"AP": 0.5})
    >>> final = replace_folder(own(run, "final"), lambda tmp: write_json_atomic(f"{tmp}/net1.json", {}),
    ...                        is_ours=lambda path: True)
    >>> sorted(os.listdir(run))
    ['.posedual_tf.json', 'final', 'metrics.json']
    >>> with open(os.path.join(run, "notes.txt"), "w") as f:
    ...     _ = f.write("mine")
    >>> own(run, "notes.txt")                                             # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    posedual_tf.files.NotOursError: ...
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Iterator

#: The ownership list of a folder posedual_tf writes into.
OWNERSHIP_FILE = ".posedual_tf.json"


class NotOursError(FileExistsError):
    """A file or folder posedual_tf did not write stands where it would write (one line, naming it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def shown_path(path: str) -> str:
    """``path`` as a command prints it: relative to the working folder when inside it (``runs/...``), else
    with the home folder as ``~``; absolute otherwise."""
    full = os.path.abspath(os.fspath(path))
    here = os.getcwd()
    if full == here or full.startswith(here.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, here)
    home = os.path.expanduser("~")
    if home not in ("", "/") and full.startswith(home.rstrip(os.sep) + os.sep):
        return "~" + full[len(home.rstrip(os.sep)):]
    return full


def write_atomic(path: str, data: bytes | str) -> None:
    """``path`` holds ``data`` or keeps what it held: written to ``path.tmp-PID`` and renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.remove(tmp)                # ours: the temporary file written above
        if isinstance(e, OSError) and e.strerror and not e.filename:     # a write's error names no file: ours
            raise OSError(e.errno, e.strerror, tmp) from None
        raise


def write_json_atomic(path: str, data: Any, indent: int | None = 1) -> None:
    write_atomic(path, json.dumps(data, indent=indent))


class BadFileError(ValueError):
    """A file that is there but holds something else than what was expected (one line, naming it)."""


def read_json(path: str, expected: str = "a JSON file") -> Any:
    """The JSON value in ``path``: one line naming the file and ``expected`` when it is not JSON (or not
    UTF-8 text, or a folder); a missing or unreadable file is the OSError, which names it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BadFileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); expected "
                           f"{expected}") from None
    except UnicodeDecodeError as e:
        raise BadFileError(f"{path}: not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}); expected "
                           f"{expected}") from None
    except IsADirectoryError:
        raise BadFileError(f"{path}: is a folder; expected {expected}") from None


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
        readable_by_others(tmp)
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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``os.umask`` sets it for
    every thread for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable_by_others(folder: str) -> None:
    """Give ``folder`` (made by ``mkdtemp``, mode 0700) and everything in it the modes a plain
    ``mkdir``/``open`` would have: folders 0777 and files 0666 less the umask (0755 / 0644 under the
    usual 022), so that a server running as another user (TF Serving) can read an export."""
    mask = current_umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, names in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for n in names:
            path = os.path.join(root, n)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def _listing(folder: str) -> dict | None:
    """The ownership list of ``folder``: None if it has none; NotOursError if it holds a file of that
    name that posedual_tf did not write."""
    path = os.path.join(folder, OWNERSHIP_FILE)
    if not os.path.lexists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and data.get("written_by") == "posedual_tf" and isinstance(data.get("tool"), str)
            and isinstance(data.get("entries"), dict)):
        raise NotOursError(f"{path}: is not an ownership list written by posedual_tf; the folder is not ours, "
                           "nothing was written (choose another folder)")
    return data


def owned_by(folder: str) -> str | None:
    """The tool that wrote ``folder`` (its ownership list says so), or None."""
    try:
        listing = _listing(folder) if os.path.isdir(folder) else None
    except NotOursError:
        return None
    return listing["tool"] if listing else None


def claim(folder: str, tool: str, accepts: tuple[str, ...] = (), setting: str = "", create: bool = True) -> str:
    """Make ``folder`` a folder ``tool`` may write into, or refuse in one line.

    A missing or empty folder is created and given an ownership list naming ``tool``. An existing one
    must carry a list written by ``tool`` or one of ``accepts`` (evaluate writes into a training
    workdir). ``setting`` (e.g. ``--output``) starts the message. ``create=False`` only checks (a missing
    folder passes and is not made). Returns ``folder``."""
    where = f"{setting} {folder}" if setting else folder
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise NotOursError(f"{where}: is a file, expected a folder; nothing was written")
    listing = _listing(folder) if os.path.isdir(folder) else None
    if listing is None:
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise NotOursError(f"{where}: holds files posedual_tf did not write ({shown}); nothing was written "
                               "(choose a new or empty folder)")
        if not create:
            return folder
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise NotOursError(f"{where}: cannot create it ({e.strerror})") from None
        write_json_atomic(os.path.join(folder, OWNERSHIP_FILE),
                          {"written_by": "posedual_tf", "tool": tool, "entries": {}})
    elif listing["tool"] not in (tool, *accepts):
        raise NotOursError(f"{where}: holds the output of posedual_tf's {listing['tool']}, which {tool} does not "
                           "write into; nothing was written (choose another folder)")
    return folder


def own(folder: str, name: str, tool: str = "") -> str:
    """``folder/name``, for writing: a name already there must be on the folder's ownership list (it is
    refused otherwise, in one line); a new name is put on the list before anything is written.
    ``folder`` must have been :func:`claim`-ed."""
    return own_all(folder, [name], tool)[0]


def own_all(folder: str, names: list[str], tool: str = "") -> list[str]:
    """:func:`own` for many names with one read and one write of the list (a predict run of thousands
    of images lists its drawings once, not once per image)."""
    listing = _listing(folder)
    if listing is None:
        raise NotOursError(f"{folder}: has no ownership list (claim it first); nothing was written")
    new = [n for n in dict.fromkeys(names) if n not in listing["entries"]]
    for name in new:
        if os.path.lexists(os.path.join(folder, name)):
            raise NotOursError(f"{os.path.join(folder, name)}: exists and was not written by posedual_tf; not replaced")
    if new:
        listing["entries"].update({n: tool or listing["tool"] for n in new})
        write_json_atomic(os.path.join(folder, OWNERSHIP_FILE), listing)
    return [os.path.join(folder, n) for n in names]


#: The largest file read as one image (a 100-megapixel JPEG is ~50 MB).
MAX_IMAGE_BYTES = 256 << 20


def read_bounded(path: str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ValueError (the reason, one line) for a
    FIFO or a device (which would block or never end) or a larger file; OSError as ``open`` raises it."""
    import stat

    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > limit:
        raise ValueError(f"{info.st_size} bytes, over the {limit >> 20} MB limit for one image")
    with open(path, "rb") as f:
        return f.read()


def is_listed(folder: str, name: str) -> bool:
    """Whether ``folder``'s ownership list names ``name``."""
    try:
        listing = _listing(folder) if os.path.isdir(folder) else None
    except NotOursError:
        return False
    return bool(listing) and name in listing["entries"]


def inside(root: str, relative: str) -> str | None:
    """``root/relative`` if ``relative`` is a relative path that stays inside ``root`` (no absolute path,
    no ``..`` part, no drive), else None: file names from data never reach outside their folder."""
    if not relative or os.path.isabs(relative) or "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return os.path.join(root, *parts)


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null meanwhile: what native code prints there (TensorFlow's start-up
    lines; its image decoders' line per damaged image, which our own messages name instead) is dropped."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


#: The lock file of a folder being written (its holder's pid and what it runs; empty when released).
LOCK_FILE = ".posedual_tf.lock"
#: realpaths of the folders this process holds: a writer that calls another (train's data preparation runs
#: the converters, training validates into its workdir) enters again
_HELD: set[str] = set()


@contextlib.contextmanager
def lock(folder: str, what: str, beside: bool = False) -> Iterator[None]:
    """Hold ``folder/.posedual_tf.lock`` (``beside``: ``folder.posedual_tf.lock``, for a folder that is
    swapped in whole) while the block runs: one writer per folder.

    Another process that asks for it is refused at once, in one line naming the folder and the holder's
    pid and command. A lock whose holder ended without releasing it (killed: the operating system drops
    the lock with the process) is taken over, with a line naming the process it was. Entering again in
    the process that holds it passes. ``what``: this writer, as the refusal will name it (e.g. ``predict``).
    """
    key = os.path.realpath(folder)
    if key in _HELD:
        yield
        return
    path = key + LOCK_FILE if beside else os.path.join(folder, LOCK_FILE)
    fd = _acquire(folder, path)
    try:
        pid, _, holder = os.pread(fd, 512, 0).decode(errors="replace").strip().partition(" ")
        if pid:
            print(f"{folder}: taking over the lock of {holder or 'a posedual_tf command'} (pid {pid}), which ended "
                  "without releasing it", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            if beside:              # nothing left beside the output (a later writer makes its own)
                os.unlink(path)
            os.ftruncate(fd, 0)         # released by its holder: nothing to take over
    finally:
        os.close(fd)            # releases the lock


def _acquire(folder: str, path: str) -> int:
    """The descriptor of the lock file ``path``, locked; NotOursError naming the holder when another
    process holds it. A lock file that its holder removed while this process waited to lock it (a lock
    beside an output is removed on release) is opened again, so two writers never hold two files."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise NotOursError(f"{folder}: cannot write its lock file ({e.strerror}); nothing was written") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, holder = os.pread(fd, 512, 0).decode(errors="replace").strip().partition(" ")
            os.close(fd)
            raise NotOursError(f"{folder}: {holder or 'another posedual_tf command'} (pid {pid or 'unknown'}) is "
                               "writing there; nothing was written (wait for it to end or use another folder)") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def lock_if_present(folder: str, what: str):
    """:func:`lock` ``folder`` now if it exists (another writer there is refused before any work), else
    nothing: a command that makes the folder later locks it then (:func:`writing`)."""
    return lock(folder, what) if os.path.isdir(folder) else contextlib.nullcontext()


@contextlib.contextmanager
def writing(folder: str, tool: str, accepts: tuple[str, ...] = (), setting: str = "", what: str = "") -> Iterator[str]:
    """:func:`claim` ``folder`` for ``tool`` and hold its :func:`lock` (as ``what``, default ``tool``) while
    the block writes there; yields ``folder``. Every command that writes a folder writes it inside one."""
    claim(folder, tool, accepts, setting)
    with lock(folder, what or tool):
        yield folder
