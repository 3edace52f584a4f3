"""Saving and restoring: training checkpoints (resume), per-network weight files, .pth import.

Layout of a workdir:
    ckpt/          tf.train checkpoints of the whole method + optimiser + epoch + the callbacks' state (last K)
    best/          net{i}.weights.h5 of the best validation AP (net 1 decides, as the reference)
    final/         net{i}.weights.h5 at the end of training
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any

import tensorflow as tf

from posedual_tf import files


def save_nets(nets, folder: str, extra: dict[str, Any] | None = None, tool: str = "train") -> None:
    """Write ``net{i}.weights.h5`` for every network, and each ``extra`` name as JSON beside them,
    atomically (temp folder beside it, then rename); the folder carries an ownership list naming ``tool``.

    An existing ``folder`` is replaced only if its ownership list says ``tool`` wrote it (an earlier
    save of the same kind: a run's best/ or final/, or a convert_torch output); anything else is an
    error, one line, and nothing is written or deleted."""
    extra = extra or {}

    def fill(tmp):
        files.claim(tmp, tool)
        for net in nets:
            net.save_weights(files.own(tmp, f"{net.name}.weights.h5"))
        for name, data in extra.items():
            files.write_json_atomic(files.own(tmp, name), data, indent=None)

    def is_ours(path):
        return files.owned_by(path) == tool

    check_weights_folder(folder, tool)
    try:
        files.replace_folder(folder, fill, is_ours)
    except FileExistsError:
        check_weights_folder(folder, tool)
        raise


def check_weights_folder(folder: str, tool: str, setting: str = "") -> None:
    """Refuse, in one line, a ``folder`` that :func:`save_nets` with ``tool`` may not replace."""
    if not os.path.lexists(folder) or files.owned_by(folder) == tool:
        return
    other = files.owned_by(folder)
    why = f"holds posedual_tf's {other} output" if other else "exists and was not written by posedual_tf"
    where = f"{setting} {os.path.normpath(folder)}" if setting else os.path.normpath(folder)
    raise files.NotOursError(f"{where}: {why}; not replaced, nothing was written (choose another folder)")


def check_finite(nets, source: str) -> None:
    """Refuse weights holding NaN or infinity (a damaged checkpoint), naming the first such tensor."""
    import numpy as np

    for net in nets:
        for w in net.weights:
            value = np.asarray(w.numpy())
            if not np.isfinite(value).all():
                bad = int((~np.isfinite(value)).sum())
                raise ValueError(f"{source}: {net.name} {w.path} holds {bad} NaN/inf values of {value.size}; "
                                 "the checkpoint is damaged")


class PretrainedError(FileNotFoundError):
    """``model.pretrained`` unset or missing: training would silently start from random weights."""


#: Where the reference's README says its initial weights come from.
PRETRAINED_SOURCE = ("the reference's README (github.com/xierc/Semi_Human_Pose, step 6) links the folder of "
                     "its ImageNet files and resnet18_5c_gluon_posedual.pth; torchvision and HRNet publish the others")


def check_pretrained(cfg) -> str | None:
    """The initial weights file of ``cfg`` (None for ``none``); raises PretrainedError, one line, when it
    is unset or missing, so that nothing trains from random weights by accident."""
    path = cfg.model.pretrained
    if not path:
        raise PretrainedError("model.pretrained: not set; name the initial weights (a .pth file or a folder "
                              "of net*.weights.h5), or start from random weights with --set model.pretrained=none")
    if path == "none":
        return None
    if not os.path.exists(path):
        raise PretrainedError(f"model.pretrained: {path} not found; {PRETRAINED_SOURCE}. Put it there (or "
                              "--set model.weights_dir=DIR), or train from random weights with "
                              "--set model.pretrained=none")
    return path


def load_nets(nets, source: str, backbone: str = "resnet", strict: bool = True) -> str:
    """Fill ``nets`` from a weights folder, a training workdir/ckpt folder or a PyTorch .pth file.

    Returns a one-line description of what was loaded.
    """
    if source.endswith((".pth", ".pth.tar", ".pt")):
        from posedual_tf.models import convert

        reports = convert.load_into(nets, source, backbone, strict=strict)
        return f"{source}: " + "; ".join(f"net{i + 1} {r.summary()}" for i, r in enumerate(reports))
    if os.path.isdir(source):
        files = {os.path.basename(p): p for p in glob.glob(os.path.join(source, "*.weights.h5"))}
        if files:
            for net in nets:
                name = f"{net.name}.weights.h5"
                if name not in files:
                    if strict:
                        raise FileNotFoundError(f"{source}: no {name} for {net.name}")
                    continue
                _load_weights_file(net, files[name])
            return f"{source}: {', '.join(sorted(files))}"
        ckpt_dir = os.path.join(source, "ckpt") if os.path.isdir(os.path.join(source, "ckpt")) else source
        latest = tf.train.latest_checkpoint(ckpt_dir)
        if latest:
            restore_nets_from_training(nets, latest)
            return latest
    if tf.io.gfile.exists(source + ".index"):
        restore_nets_from_training(nets, source)
        return source
    raise FileNotFoundError(f"{source}: not a .pth file, a folder of net*.weights.h5, or a training checkpoint")


class ArchitectureMismatchError(ValueError):
    """Saved weights that do not fit the configured network (one line, first mismatching tensor)."""


def _load_weights_file(net, path: str) -> None:
    """``net.load_weights`` without Keras' warning per layer; a mismatch is one line naming the first tensor."""
    import re
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net.load_weights(path)
        except ValueError as e:
            text = str(e)
            layer = re.search(r"object <\w+ name=([^,>]+)", text)
            shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
            count = re.search(r"A total of (\d+) objects could not be loaded", text)
            if layer and shapes:
                detail = (f"{count.group(1) if count else 'some'} layers differ, first {layer.group(1)}: "
                          f"{shapes.group(2)} in the file, {shapes.group(1)} in the network")
            else:
                detail = text.strip().splitlines()[0]
            raise ArchitectureMismatchError(f"{path}: does not fit the config's {net.name} ({detail}); was it "
                                            "saved from another model config?") from None


def training_checkpoint(nets, optimizer=None, epoch=None, run_state: RunState | None = None) -> tf.train.Checkpoint:
    """The training checkpoint layout: each network by name (all its weights, BN statistics included),
    the optimiser (with its step counter: the learning-rate position, the per-step draws and the input
    position follow from it; and the float16 loss scale), the epoch counter and the callbacks' state."""
    parts = {net.name: net for net in nets}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    if run_state is not None:
        parts["run_state"] = run_state
    return tf.train.Checkpoint(**parts)


class RunState(tf.train.experimental.PythonState):
    """What a run's callbacks keep that later decisions read (the validation history; the corrupt-record
    counts that the stop rule divides), saved as JSON inside every training checkpoint, so that a resumed
    run goes on from the checkpoint's values. Each part is an object with ``state() -> dict`` and
    ``load_state(dict)``, added under a name; ``restored`` holds what the resumed checkpoint had.

    Example:
        >>> from posedual_tf.checkpoints import RunState
        >>> class Count:
        ...     n = 0
        ...     def state(self): return {"n": self.n}
        ...     def load_state(self, d): self.n = d["n"]
        >>> saved, resumed = RunState(), RunState()
        >>> a, b = Count(), Count()
        >>> a.n = 5
        >>> saved.add("count", a)
        >>> resumed.deserialize(saved.serialize())
        >>> resumed.add("count", b)
        >>> b.n
        5
    """

    def __init__(self):
        self.parts: dict[str, Any] = {}
        self.restored: dict[str, dict] = {}

    def add(self, name: str, part) -> None:
        """Save ``part``'s state under ``name`` from now on; load the resumed one into it, if any."""
        self.parts[name] = part
        if name in self.restored:
            part.load_state(self.restored[name])

    def serialize(self) -> str:
        return json.dumps({name: part.state() for name, part in self.parts.items()})

    def deserialize(self, string) -> None:
        text = string.numpy() if hasattr(string, "numpy") else string
        self.restored = json.loads(text.decode() if isinstance(text, bytes) else text)
        for name, part in self.parts.items():
            if name in self.restored:
                part.load_state(self.restored[name])


def restore_run_state(state: RunState, prefix: str) -> bool:
    """Load the callbacks' state of the training checkpoint ``prefix`` into ``state``; False for a
    checkpoint that holds none (written before it was saved)."""
    tf.train.Checkpoint(run_state=state).restore(prefix).expect_partial()
    return bool(state.restored)


def restore_training(ckpt: tf.train.Checkpoint, prefix: str) -> None:
    """Restore a whole training checkpoint (resume). One of other networks, or a damaged one (truncated
    ``.data``, garbage ``.index``), is one line naming it, without TF's warning per unrestored value."""
    try:
        status = ckpt.restore(prefix)
        status.assert_existing_objects_matched()
        status.expect_partial()                     # the callbacks' state: restore_run_state
    except (ValueError, AssertionError) as e:          # a shape or object that does not fit
        _quiet_unrestored_values()
        raise ArchitectureMismatchError(f"{prefix}: does not fit the config's networks ({_first_line(e)}); was it "
                                        "trained with another model config?") from None
    except (tf.errors.OpError, IndexError, RuntimeError) as e:   # TF's reader raises IndexError on short files
        _quiet_unrestored_values()
        raise ArchitectureMismatchError(f"{prefix}: cannot be read, the checkpoint is damaged "
                                        f"({_first_line(e)}); remove ckpt/ (or point ckpt/checkpoint at an older "
                                        "ckpt-N) or start afresh with --set train.resume=false") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


class _UnrestoredValuesFilter:
    """Drops TF's warnings about checkpoint values left unrestored (one per tensor, hundreds, printed
    when the objects are deleted) once a restore has failed: the one-line error already says so."""

    def filter(self, record) -> bool:
        text = record.getMessage()
        return not (text.startswith("Value in checkpoint could not be found") or "with unrestored values" in text)


_FILTER = _UnrestoredValuesFilter()


def _quiet_unrestored_values() -> None:
    """TF's restore raises before it returns the status whose ``expect_partial()`` would silence them."""
    logger = tf.get_logger()
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def restore_nets_from_training(nets, prefix: str) -> None:
    """Restore only the networks from a training checkpoint; a mismatch is one line."""
    try:
        training_checkpoint(nets).restore(prefix).expect_partial().assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
        _quiet_unrestored_values()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArchitectureMismatchError(f"{prefix}: does not fit the config's networks ({first[:300]}); was it "
                                        "trained with another model config?") from None


def load_networks(cfg, checkpoint: str) -> tuple[list, str]:
    """The config's networks, float32 (the global dtype policy is left as it was), filled from ``checkpoint``
    (:func:`load_nets`), and the one-line description of what was loaded."""
    from posedual_tf.models import builder

    nets = builder.build_networks(cfg, policy="float32")
    return nets, load_nets(nets, checkpoint, cfg.model.backbone)


def exported_networks(cfg, checkpoint: str, net: str) -> tuple[list, str, str]:
    """The float32 networks of ``checkpoint`` that an export holds, and which (``1``, ``2``, ``ensemble``)
    and why: ``net`` ``best`` follows :mod:`posedual_tf.best_net`'s rule, ``1`` or ``2`` is that network,
    ``ensemble`` both (their mean heatmaps); ValueError (one line) for a choice the config does not have."""
    from posedual_tf import best_net
    from posedual_tf.models import builder

    chosen, why = best_net.resolve(net, checkpoint, builder.num_networks(cfg))
    nets, _ = load_networks(cfg, checkpoint)
    return (nets if chosen == "ensemble" else [nets[int(chosen) - 1]]), chosen, why
