"""Load official PyTorch checkpoints (torchvision/HRNet ImageNet, reference PoseResNet / PoseCons /
PoseDual ``.pth`` and ``.pth.tar``) into the Keras networks.

``torch.load(weights_only=True)`` reads tensors only, never pickled code. Layouts:
Conv ``(out, in, kh, kw)`` and ConvTranspose ``(in, out, kh, kw)`` -> Keras ``(kh, kw, in|out, out|in)``
by permuting ``(2, 3, 1, 0)``; BN -> ``[gamma, beta, moving_mean, moving_variance]``.

Example (an official checkpoint, not shipped here; needs the ``[torch]`` extra):
    >>> import posedual_tf                                                 # doctest: +SKIP
    >>> from posedual_tf.models.convert import read_checkpoint, assign     # doctest: +SKIP
    >>> keras_net = posedual_tf.build_networks(posedual_tf.load_config("coco1k_dual"))[0]   # doctest: +SKIP
    >>> states = read_checkpoint("COCO1K_PoseDual.pth.tar")     # doctest: +SKIP
    >>> sorted(states)                                          # doctest: +SKIP
    ['net1', 'net2']
    >>> report = assign(keras_net, states["net1"])              # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from posedual_tf.models.layers import torch_key

#: HRNet ImageNet layers the reference loads (its PRETRAINED_LAYERS).
HRNET_PRETRAINED = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2",
                    "stage3", "transition3", "stage4")
IGNORED_SUFFIXES = (".num_batches_tracked",)


class ConversionError(ValueError):
    """A checkpoint that does not fit the network (names the tensor)."""


@dataclasses.dataclass
class Report:
    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    #: which of the checkpoint's networks filled this one ("net1": ``resnet.*`` or unprefixed keys,
    #: "net2": ``resnet2.*``)
    source: str = "net1"

    def summary(self) -> str:
        keys = {"net1": "resnet.* / unprefixed", "net2": "resnet2.*"}.get(self.source, self.source)
        return (f"{len(self.matched)} tensors from its {keys} keys, {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected")


def read_checkpoint(path: str) -> dict[str, dict[str, np.ndarray]]:
    """Tensors of a checkpoint, split per network: ``{'net1': {...}}`` or ``{'net1', 'net2'}``.

    Accepts a bare state_dict or ``{'state_dict': ...}``; strips ``module.``; ``resnet.`` keys
    go to net1 and ``resnet2.`` keys to net2.
    """
    if not os.path.exists(path):
        raise ConversionError(f"{path}: checkpoint not found")
    try:
        import torch
    except ImportError:
        raise ConversionError("reading .pth files needs the torch extra: pip install -e '.[torch]'") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise ConversionError(f"{path}: not a readable weights-only PyTorch checkpoint ({type(e).__name__})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    nets: dict[str, dict[str, np.ndarray]] = {}
    for key, value in obj.items():
        if not hasattr(value, "numpy"):
            continue
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("resnet2."):
            net, k = "net2", k[len("resnet2."):]
        elif k.startswith("resnet."):
            net, k = "net1", k[len("resnet."):]
        else:
            net = "net1"
        if k.startswith("final_layer_1."):
            k = "final_layer." + k[len("final_layer_1."):]
        nets.setdefault(net, {})[k] = value.detach().float().numpy()
    return nets


def is_imagenet(state: dict[str, np.ndarray]) -> bool:
    """An ImageNet classifier checkpoint (no pose head)."""
    return not any(k.startswith(("deconv_layers.", "final_layer.weight")) for k in state) or \
        "fc.weight" in state or "classifier.weight" in state


def _keras_tensors(layer, state, key):
    from keras import layers

    if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
        names = [f"{key}.weight"] + ([f"{key}.bias"] if layer.use_bias else [])
        if names[0] not in state:
            return None, names
        _require(state, names)
        return [np.transpose(state[names[0]], (2, 3, 1, 0))] + [state[n] for n in names[1:]], names
    if isinstance(layer, layers.BatchNormalization):
        names = [f"{key}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        if names[0] not in state:
            return None, names
        _require(state, names)
        return [state[n] for n in names], names
    return None, []


def _require(state, names):
    for n in names:
        if n not in state:
            raise ConversionError(f"{n}: missing from the checkpoint")


def assign(model, state: dict[str, np.ndarray], skip_missing: tuple[str, ...] = (),
           only_prefixes: tuple[str, ...] | None = None) -> Report:
    """Copy ``state`` into ``model``'s layers by name; shape mismatches raise ConversionError.

    ``skip_missing``: key prefixes allowed to be absent (e.g. the head for ImageNet files).
    ``only_prefixes``: use only checkpoint keys under these prefixes (HRNet ImageNet).
    """
    if only_prefixes is not None:
        state = {k: v for k, v in state.items() if k.split(".")[0] in only_prefixes}
    used, matched, missing = set(), [], []
    for layer in _weighted_layers(model):
        key = torch_key(layer.name)
        tensors, names = _keras_tensors(layer, state, key)
        if tensors is None:
            if names and not key.startswith(skip_missing):
                missing.append(names[0])
            continue
        current = layer.get_weights()
        for name, t, c in zip(names, tensors, current):
            if t.shape != c.shape:
                shown = tuple(np.transpose(t, (3, 2, 0, 1)).shape) if t.ndim == 4 else t.shape
                want = tuple(np.transpose(c, (3, 2, 0, 1)).shape) if c.ndim == 4 else c.shape
                raise ConversionError(f"{name}: shape {shown} in the checkpoint, the network needs {want}")
        layer.set_weights([t.astype(c.dtype) for t, c in zip(tensors, current)])
        used.update(names)
        matched.extend(names)
    unexpected = sorted(k for k in state if k not in used and not k.endswith(IGNORED_SUFFIXES))
    return Report(matched, missing, unexpected)


def _weighted_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def load_into(nets: list, path: str, backbone: str, strict: bool = True) -> list[Report]:
    """Fill ``nets`` (1 or 2 Keras networks) from a checkpoint, the reference's way.

    ImageNet files fill every network's backbone (heads keep their init); a two-backbone file
    (``resnet.*`` + ``resnet2.*`` without heads) fills net 1 from the first and net 2 from the
    second. A PoseDual file fills net 1 from ``resnet.*`` and net 2 from ``resnet2.*``; a single-network file fills net 1 and,
    with ``strict``, leaving net 2 empty is an error. Missing keys are errors under ``strict``.
    """
    states = read_checkpoint(path)
    first = states.get("net1", {})
    reports = []
    if is_imagenet(first):
        # backbone-only files: a plain ImageNet file fills every network with the same weights; the
        # reference's two-backbone PoseDual file (resnet.* and resnet2.*, e.g.
        # resnet18_5c_gluon_posedual.pth) gives net 1 the first and net 2 the second
        only = HRNET_PRETRAINED if backbone == "hrnet" else None
        head = ("deconv_layers", "final_layer")
        for i, net in enumerate(nets):
            state = states.get(f"net{i + 1}", first)
            rep = assign(net, state, skip_missing=head, only_prefixes=only)
            rep.unexpected = [k for k in rep.unexpected if not k.startswith(("fc.", "classifier.", "incre_modules",
                                                                              "downsamp_modules", "final_layer"))]
            rep.source = f"net{i + 1}" if f"net{i + 1}" in states else "net1"
            reports.append(rep)
    else:
        for i, net in enumerate(nets):
            state = states.get(f"net{i + 1}")
            if state is None:
                if strict:
                    raise ConversionError(f"{path}: has no weights for net{i + 1} (keys 'resnet2.*'); "
                                          "pass --allow-missing to keep its initialisation")
                reports.append(Report([], ["<all>"], [], source="-"))
                continue
            rep = assign(net, state)
            rep.source = f"net{i + 1}"
            reports.append(rep)
    if strict:
        for i, rep in enumerate(reports):
            if rep.missing:
                raise ConversionError(f"{path}: net{i + 1}: missing tensor {rep.missing[0]} "
                                      f"({len(rep.missing)} missing in all)")
    return reports
