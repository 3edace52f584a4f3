"""The one command-line stack: flags and helpers shared by every command (train, evaluate, export, predict,
convert_torch, and tfrecords_tools' converters and inspect). Flags are defined only when a command runs
(:func:`run`), errors are one line (:func:`guarded`), ``--debug`` shows the traceback, ``--verbose``
TensorFlow's start-up lines, and ``--a_b`` is accepted for ``--a-b``."""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import sys
from typing import Callable

from absl import flags
from absl import logging as absl_logging

from posedual_tf import files

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class OnlyWhen:
    """A flag that other flags can make meaningless: given where ``applies()`` is false, the command stops with
    one line (``--FLAG: why``) before doing anything. ``example``: other arguments under which it does not apply
    (what tests/test_cli_flags.py gives it)."""

    flag: str
    applies: Callable[[], bool]
    why: str
    example: tuple[str, ...] = ()


#: the running command's relevance rules (:func:`only_when`), checked by :func:`run` after parsing
RULES: list[OnlyWhen] = []
#: the running command's positional arguments (a role, a prefix), known once :func:`check_flags` parsed them
POSITIONAL: list[str] = []
#: numeric flags whose domain is every finite number, with why (every other numeric flag declares bounds)
UNBOUNDED: dict[str, str] = {}


def only_when(flag: str, applies: Callable[[], bool], why: str, example: tuple[str, ...] = ()) -> None:
    """Declare that ``--flag`` means something only where ``applies()`` (see :class:`OnlyWhen`)."""
    RULES.append(OnlyWhen(flag, applies, why, tuple(example)))


def any_finite(flag: str, why: str) -> None:
    """Declare a numeric flag whose domain is every finite number (its help says what it is)."""
    UNBOUNDED[flag] = why


def _finite_floats() -> None:
    """Every float flag refuses nan and inf (absl's bounds let nan through)."""
    for name in list(FLAGS):
        flag = FLAGS[name]
        if flag.name == name and flag.flag_type() == "float":
            flags.register_validator(name, lambda v: v is None or math.isfinite(v), message="expected a finite number")


def check_flags(argv: list[str]) -> None:
    """Parse ``argv`` once before the command starts (and before TensorFlow is imported): a value outside its
    flag's domain, an unknown flag or one that the other flags make meaningless is one line and exit 1."""
    try:
        POSITIONAL[:] = FLAGS(argv)[1:]
        for rule in RULES:
            if FLAGS[rule.flag].present and not rule.applies():
                sys.exit(f"error: --{rule.flag}: {rule.why}; nothing was done")
    except flags.Error as e:
        sys.exit(f"error: {str(e).strip().splitlines()[0]}")
    finally:
        FLAGS.unparse_flags()


def define_common_flags() -> None:
    """``--debug`` and ``--verbose``, shared by every command (defined when a command runs, not on import)."""
    if "debug" not in FLAGS:
        flags.DEFINE_bool("debug", False, "on an error, show the whole traceback instead of one line")
        flags.DEFINE_bool("verbose", False, "show TensorFlow's start-up and info log lines (hidden by default)")


def quiet_tensorflow(argv: list[str] | None = None) -> None:
    """Import TensorFlow and Keras with their start-up lines (oneDNN, CPU features, absl banners)
    hidden, and keep later C++ info/warning lines and TensorFlow's Python warnings quiet, unless
    ``--verbose`` is among ``argv``."""
    argv = sys.argv if argv is None else argv
    if "--verbose" in argv or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib

    with files.stderr_to_devnull():
        tf = importlib.import_module("tensorflow")
        importlib.import_module("keras")
    tf.get_logger().setLevel("ERROR")           # TensorFlow's Python warnings


def normalise_flag_spelling(argv: list[str], known) -> list[str]:
    """Accept ``--a_b`` for a flag spelled ``--a-b`` (our spelling), and leave everything else alone."""
    out = []
    for arg in argv:
        if arg.startswith("--") and "_" in arg.split("=", 1)[0]:
            name, sep, value = arg[2:].partition("=")
            dashed = name.replace("_", "-")
            if known(dashed) and not known(name):
                arg = f"--{dashed}{sep}{value}"
        out.append(arg)
    return out


def run(main, define_flags=None) -> None:
    """Entry point of every absl command line: the shared flags and the command's (``define_flags``,
    which calls ``flags.adopt_module_key_flags(cli)`` so that ``--config``/``--set`` and the shared
    flags show in its ``--help``), both flag spellings, quiet TensorFlow start-up, and one-line errors
    (:func:`guarded`). Flags exist only in a process that runs a command: the modules import cleanly
    side by side (a notebook may import train, evaluate and predict together)."""
    from absl import app

    define_common_flags()
    if define_flags is not None:
        define_flags()
    _finite_floats()

    argv = normalise_flag_spelling(sys.argv, lambda n: n in FLAGS or n.startswith("no") and n[2:] in FLAGS)
    asked_help = any(a in ("--help", "-h", "--helpfull", "--helpshort", "--helpxml", "-?") for a in argv)
    try:
        if not asked_help:
            check_flags(argv)
            quiet_tensorflow(argv)
        app.run(guarded(main), argv=argv)
    except KeyboardInterrupt:          # before main runs (TensorFlow's import) or after it
        interrupted()
    except SystemExit as e:
        if asked_help and e.code == 1:        # absl ends --help with status 1; help asked for is a success
            sys.exit(0)
        raise


def guarded(main):
    """``main`` for ``app.run``: any error ends the command with one line (``error: ...``, exit 1);
    ``--debug`` shows the traceback instead."""

    @functools.wraps(main)
    def run(argv):
        # absl's warnings (TFLite's converter logs with it): with --verbose only
        absl_logging.set_verbosity(absl_logging.INFO if FLAGS.verbose else absl_logging.ERROR)
        try:
            return main(argv)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            if FLAGS.is_parsed() and "debug" in FLAGS and FLAGS.debug:
                raise
            interrupted()
        except Exception as e:  # noqa: BLE001 - the one place that turns every error into one line
            if FLAGS.is_parsed() and "debug" in FLAGS and FLAGS.debug:
                raise
            sys.exit(f"error: {one_line(e)}")

    return run


class UsageError(ValueError):
    """A command line without a flag it needs (one line)."""


def required(*names: str, hint: str = "") -> None:
    """One line naming every flag of ``names`` that was not given (``hint``: what to give)."""
    missing = [f"--{n}" for n in names if FLAGS[n].value in (None, "", [])]
    if missing:
        raise UsageError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
                         + (f" ({hint})" if hint else "") + "; --help lists every flag")


#: The exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def interrupted() -> None:
    """End a command stopped by Ctrl-C with one line (no traceback) and status 130. Every file is
    written under a temporary name and renamed, so what exists is whole; a re-run resumes or reuses it."""
    print("interrupted (Ctrl-C); files already written are complete, a re-run resumes", file=sys.stderr)
    sys.exit(INTERRUPTED)


def one_line(e: BaseException) -> str:
    """A readable single line for an exception: OSErrors, and TensorFlow's errors of a file (``PATH; reason``),
    as 'path: reason' (a file being written under its temporary name is named by its own); others their
    first line."""
    if isinstance(e, OSError) and e.strerror:
        return _file_line(str(e.filename or ""), e.strerror)
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if type(e).__module__.startswith("tensorflow"):
        first = first_cause(text) or first
        file_error = _TF_FILE_ERROR.match(first)
        path = file_error["path"] if file_error else ""
        if os.sep in path and " " not in path.strip(os.sep).split(os.sep)[-1]:
            return _file_line(path, file_error["reason"])
        if "OOM when allocating" in first or type(e).__name__ == "ResourceExhaustedError":
            return (f"out of memory ({first}): lower the batch size (train.batch_size, test.batch_size) or the "
                    f"input size (data.image_size), or free the device")
    known = type(e).__module__.startswith(("posedual_tf", "tfrecords_tools")) or isinstance(e, (ValueError, KeyError))
    return first if known and first else f"{type(e).__name__}: {first} (run with --debug for the traceback)"


#: TensorFlow's error of a file: ``PATH; reason`` (its file system) or ``PATH: reason`` (a checkpoint's writer)
_TF_FILE_ERROR = re.compile(r"^(?P<path>[^;:]+?)[;:] (?P<reason>.+)$")
#: the temporary names a file has while it is written: ours (:func:`files.write_atomic`, the converters'
#: shards: ``NAME.tmp-PID``), TensorFlow's (``NAME.tempstateN``) and a checkpoint's (``ckpt-N_temp/...``)
_TEMPORARY = re.compile(r"(\.tmp-\d+|\.tempstate\d+|_temp/.*)$")


def _file_line(path: str, reason: str) -> str:
    """``path: reason``; a file written under a temporary name is named as the file it was to become,
    which keeps what it held."""
    if not path:
        return reason
    target, n = _TEMPORARY.subn("", path)
    return f"{target}: {reason} (while writing it; nothing was replaced)" if n else f"{path}: {reason}"


#: lines of a TensorFlow error message that frame the cause rather than state it
_FRAMING = ("Graph execution error", "Detected at node", "The op is created at", "File ", "Stack trace",
            "defined at", "[[")


#: what TensorFlow wraps an eager op's error in: the function it ran in, and the op's name
_OP_FRAME = re.compile(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name:.*)?$")


def first_cause(text: str) -> str:
    """The first line of a TensorFlow error that states its cause (an XLA or graph error starts with
    'Graph execution error:' and the stack of the node before the reason; an eager op's error is framed by
    ``{{function_node ...}}`` and ``[Op:NAME]``)."""
    for line in text.splitlines():
        s = _OP_FRAME.sub("", line).strip()
        if s and not line[:1].isspace() and not s.startswith(_FRAMING):
            return s
    return ""


def define_config_flags() -> None:
    flags.DEFINE_string("config", None, "experiment name (posedual_tf/configs/NAME.yaml) or a YAML path")
    flags.DEFINE_multi_string("set", [], "override a config value: --set train.batch_size=8 (repeatable)")


def load_config():
    """The config named by --config with --set overrides; a bad one exits with a one-line error."""
    from posedual_tf import config

    if not FLAGS.config:
        sys.exit("error: --config is required (one of: " + ", ".join(config.available()) + ")")
    try:
        return config.load(FLAGS.config, FLAGS.set)
    except config.ConfigError as e:
        sys.exit(f"config error: {e}")
