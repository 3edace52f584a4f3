"""Typed experiment configs.

A named experiment is a YAML file in ``posedual_tf/configs/`` (installed with the package); it may start with ``base: other_name`` to
inherit another file and state only what differs. Values are checked against the dataclass
schema (:mod:`posedual_tf.config_schema`, whose classes this module exports); an unknown key, a wrong type or a bad choice is a one-line
:class:`ConfigError` naming the file and the key.

Example:
    >>> from posedual_tf import config
    >>> cfg = config.load("coco1k_dual", overrides=["train.batch_size=8"])
    >>> cfg.train.batch_size
    8

``python -m posedual_tf.config --config coco1k_dual [--set a.b=c ...]`` prints the resolved config.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import typing
from typing import Any, Literal

import yaml

from posedual_tf import aug_paths, joints

from posedual_tf.config_schema import (Config, ConfigError, DataConfig, DatasetConfig, FixesConfig, MethodConfig,
                                       ModelConfig, SyntheticConfig, TestConfig, TrainConfig)

__all__ = ["Config", "ConfigError", "DataConfig", "DatasetConfig", "FixesConfig", "MethodConfig", "ModelConfig",
           "SyntheticConfig", "TestConfig", "TrainConfig", "available", "dump", "find", "load", "parse_override"]

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"     # shipped inside the package


# --------------------------------------------------------------------------- validation

def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check ``value`` against type ``tp``; errors name ``source`` (file) and ``key``."""
    def fail() -> ConfigError:
        return ConfigError(f"{source}: {key or '<top>'}: expected {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin is Literal:
        if isinstance(value, bool) and str(value).lower() in typing.get_args(tp):
            value = str(value).lower()                  # YAML reads true/false as booleans
        if isinstance(value, bool) or value not in typing.get_args(tp):
            raise fail()
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail()
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key or '<top>'}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        kwargs = {}
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k not in names:
                raise ConfigError(f"{source}: unknown key '{sub}'; expected one of {names}")
            kwargs[k] = _coerce(v, hints[k], source, sub)
        return tp(**kwargs)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise fail() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: expected a finite float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail()
        return value
    raise ConfigError(f"{source}: {key}: unsupported schema type {tp}")


def _validate(cfg: Config, source: str, overrides: dict[str, str] | None = None) -> None:
    """Cross-field checks that a type cannot express; a failing key set by ``--set`` blames that ``--set``."""
    problems = _problems(cfg)
    if problems:
        key, expected = problems[0]
        blame = next((f"--set {text}" for k, text in (overrides or {}).items() if _related(key, k)), source)
        raise ConfigError(f"{blame}: {key}: expected {expected}")


def _related(a: str, b: str) -> bool:
    """Whether two keys are one, or one holds the other (``train`` and ``train.lr``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _problems(cfg: Config) -> list[tuple[str, str]]:
    """Every cross-field check that fails: ``(key, what was expected)``."""
    d, m, t = cfg.data, cfg.model, cfg.train
    checks = [
        (len(d.image_size) == 2 and all(v > 0 for v in d.image_size), "data.image_size",
         "two positive ints [W, H]"),
        (len(d.heatmap_size) == 2 and all(v > 0 for v in d.heatmap_size), "data.heatmap_size",
         "two positive ints [w, h]"),
        (len(d.image_size) != 2 or len(d.heatmap_size) != 2
         or d.image_size[0] * d.heatmap_size[1] == d.image_size[1] * d.heatmap_size[0],
         "data.heatmap_size", "the same aspect ratio as data.image_size"),
        (d.sigma > 0, "data.sigma", "a positive float"),
        (len(d.mean) == 3 and len(d.std) == 3 and all(s > 0 for s in d.std), "data.std",
         "3 positive floats (and data.mean 3 floats)"),
        (m.backbone != "resnet" or m.depth in (18, 34, 50, 101, 152), "model.depth",
         "one of 18, 34, 50, 101, 152"),
        (m.backbone != "hrnet" or m.hrnet_width in (32, 48), "model.hrnet_width", "32 or 48"),
        (m.num_joints == joints.NUM_UNION, "model.num_joints",
         f"{joints.NUM_UNION}: every network predicts the union joint set (a dataset's joints map into it)"),
        (len(m.deconv_filters) == len(m.deconv_kernels) >= 1,
         "model.deconv_filters", "one entry per deconvolution layer, as many as model.deconv_kernels"),
        (all(k in (2, 3, 4) for k in m.deconv_kernels), "model.deconv_kernels", "kernels in {2, 3, 4}"),
        (m.final_conv_kernel in (1, 3), "model.final_conv_kernel", "1 or 3"),
        (m.width_multiplier > 0, "model.width_multiplier", "a positive float"),
        (0 < t.batch_size <= MAX_BATCH, "train.batch_size", f"a positive int up to {MAX_BATCH}"),
        (t.replica_batch >= 0, "train.replica_batch", "an int >= 0 (0: one group per device); whether the "
                                                      "devices' shares of train.batch_size hold whole groups is "
                                                      "checked when training starts, where the devices are known"),
        (t.replica_batch == 0 or t.batch_size // t.replica_batch <= MAX_GROUPS, "train.replica_batch",
         f"at most {MAX_GROUPS} groups in train.batch_size ({t.batch_size})"),
        (t.replica_batch in (0, t.batch_size) or cfg.method.consistency_pair == "easy_hard", "train.replica_batch",
         f"0 or train.batch_size with method.consistency_pair={cfg.method.consistency_pair} (one group)"),
        (0 <= t.seed < 2 ** 32, "train.seed", "an int in [0, 2^32)"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints", "an int >= 1 (the last checkpoint is what resumes)"),
        (t.epochs > 0, "train.epochs", "a positive int"),
        (t.lr > 0, "train.lr", "a positive float"),
        (t.steps_per_epoch >= 0, "train.steps_per_epoch", "an int >= 0 (0 = the reference epoch)"),
        (t.checkpoint_every_steps >= 0, "train.checkpoint_every_steps", "an int >= 0 (0 = epoch ends only)"),
        (t.steps_per_execution >= 1, "train.steps_per_execution", "an int >= 1"),
        (0 < t.peer_timeout_s <= 7 * 86400, "train.peer_timeout_s", "seconds in (0, 604800]: every wait on "
                                                                   "another process is bounded"),
        *[(getattr(t, k) % max(t.steps_per_execution, 1) == 0, f"train.{k}",
           f"a multiple of train.steps_per_execution ({t.steps_per_execution}): the callbacks see every "
           f"{t.steps_per_execution}th step only") for k in ("log_every", "checkpoint_every_steps",
                                                             "image_summary_every")],
        (0 <= d.max_corrupt_fraction <= 1, "data.max_corrupt_fraction", "a fraction in [0, 1]"),
        (t.lr_step == sorted(t.lr_step), "train.lr_step", "ascending epochs"),
        (cfg.method.mask_joint_num >= 0, "method.mask_joint_num", "an int >= 0"),
        (0 <= cfg.method.rand_magnitude <= 30, "method.rand_magnitude", "an int in [0, 30]"),
        (0 < cfg.test.batch_size <= MAX_BATCH, "test.batch_size", f"a positive int up to {MAX_BATCH}"),
        (not (cfg.method.paths and cfg.method.rand_aug), "method.rand_aug",
         "false when method.paths is set (start a path with RA instead)"),
        (not cfg.method.paths or cfg.method.name != "supervised", "method.paths",
         "empty for method 'supervised' (paths are hard views of unlabelled data)"),
        (cfg.method.jo_joint_num >= 0 and cfg.method.co_holes >= 0 and cfg.method.cm_holes >= 0,
         "method.jo_joint_num", "ints >= 0 (and method.co_holes, method.cm_holes)"),
        (cfg.method.consistency_pair == "easy_hard" or len(cfg.method.paths) <= 1, "method.consistency_pair",
         "easy_hard when method.paths has several paths (same/reversed pair one hard path)"),
        (cfg.method.consistency_pair == "easy_hard" or t.pass_schedule == "reference", "train.pass_schedule",
         f"reference with method.consistency_pair={cfg.method.consistency_pair}"),
        (d.crops_on == "host" or cfg.method.name == "supervised" or not aug_paths.image_policies(cfg.method),
         "data.crops_on", "host when a hard path starts from a RandAugment or TrivialAugment copy "
                          "(method.rand_aug, RA/TA/YOCO paths): those copies are made on the host"),
        (0 <= cfg.test.peak_threshold <= 1, "test.peak_threshold", "a float in [0, 1]"),
        (all(v > 0 for v in cfg.test.oks_sigmas), "test.oks_sigmas", "positive floats, one per joint"),
    ]
    for i, text in enumerate(cfg.method.paths):
        try:
            aug_paths.parse_path(text)
        except ValueError as e:
            checks.append((False, f"method.paths[{i}]", str(e)))
    return [(key, expected) for ok, key, expected in checks if not ok]


def check(cfg: Config) -> None:
    """Every cross-field check of a config changed after loading; ConfigError (one line) for the first
    that fails."""
    problems = _problems(cfg)
    if problems:
        key, expected = problems[0]
        raise ConfigError(f"{cfg.name or 'config'}: {key}: expected {expected} (checked before training)")


def check_assignment(root: Config, section, name: str, value: Any) -> None:
    """``section.name = value`` on a loaded config (:class:`posedual_tf.config_schema.Checked`): the value is
    checked as ``--set`` checks it (its type, then the checks of that key) and assigned, or the config is
    left as it was and ConfigError says why in one line (``cfg.train.lr = 'fast': train.lr: expected ...``)."""
    key = f"{section._key}{name}"
    shown = f"<{type(value).__name__}>" if dataclasses.is_dataclass(value) else repr(value)
    source = f"cfg.{key} = {shown if len(shown) <= 60 else shown[:57] + '...'}"
    hints = typing.get_type_hints(type(section))
    if name not in hints:
        raise ConfigError(f"cfg.{key}: unknown key '{key}'; expected one of {[f.name for f in dataclasses.fields(section)]}")
    tp = hints[name]
    if dataclasses.is_dataclass(tp) and dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    coerced = _coerce(value, tp, source, key)
    old = section.__dict__.get(name)
    object.__setattr__(section, name, coerced)
    if dataclasses.is_dataclass(coerced):
        attach(coerced, root, key + ".")
    failed = [(k, e) for k, e in _problems(root) if _related(k, key)]
    if failed:
        object.__setattr__(section, name, old)
        raise ConfigError(f"{source}: {failed[0][0]}: expected {failed[0][1]}")


def attach(section, root: Config, key: str = "") -> None:
    """Make ``section`` (a config, or one of its sections, at ``key``) check every later assignment."""
    object.__setattr__(section, "_root", root)
    object.__setattr__(section, "_key", key)
    for f in dataclasses.fields(section):
        value = section.__dict__[f.name]
        if dataclasses.is_dataclass(value):
            attach(value, root, f"{key}{f.name}.")


def _uses(cfg: Config, *names: str) -> bool:
    """Whether a hard path of ``cfg`` has one of ``names`` as its image policy or among its ops."""
    if cfg.method.name == "supervised":
        return False
    return any(p.base in names or set(p.ops) & set(names) for p in aug_paths.method_paths(cfg.method))


def _semi(cfg: Config) -> bool:
    return cfg.method.name != "supervised"


_SEMI = "only with a semi-supervised method (method.name cons or dual)"
#: Settings that other settings make meaningless: (key or section, applies(cfg), why). Set with ``--set``
#: where it does not apply, it is an error: an override that would change nothing is never silent.
RELEVANCE: list[tuple[str, Any, str]] = [
    *[(k, lambda c: c.model.backbone == "resnet", "only with model.backbone=resnet")
      for k in ("model.depth", "model.style", "model.deconv_filters", "model.deconv_kernels")],
    ("model.hrnet_width", lambda c: c.model.backbone == "hrnet", "only with model.backbone=hrnet"),
    ("data.unlabelled", _semi, _SEMI),
    *[(f"method.{k}", _semi, _SEMI) for k in ("unsup_transform", "unsup_rot_prob", "cons_weight", "paths",
                                              "consistency_pair", "heat_fusion", "conf_masking", "sharpen_pred")],
    ("method.rand_aug_num_ops", lambda c: _uses(c, "RA", "YOCORA"), "only when a hard path uses RandAugment "
                                                                     "(method.rand_aug, or an RA/YOCORA path)"),
    ("method.rand_magnitude", lambda c: _uses(c, "RA", "YOCORA"), "only when a hard path uses RandAugment "
                                                                   "(method.rand_aug, or an RA/YOCORA path)"),
    ("method.jo_joint_num", lambda c: _uses(c, "JO"), "only when a hard path uses joint occlusion (JO, JOCO)"),
    ("method.co_holes", lambda c: _uses(c, "CO", "CM"), "only when a hard path uses cutout or CutMix (CO, CM)"),
    ("method.cm_holes", lambda c: _uses(c, "CM"), "only when a hard path uses CutMix (CM, JCCM)"),
    ("method.conf_thresh", lambda c: _semi(c) and c.method.conf_masking, "only with method.conf_masking=true"),
    ("data.num_joints_half_body", lambda c: c.data.prob_half_body > 0, "only with data.prob_half_body > 0"),
    ("train.lr_factor", lambda c: bool(c.train.lr_step), "only with train.lr_step epochs"),
    ("test.oks_thre", lambda c: c.test.nms != "none", "only with test.nms oks or soft_oks"),
]


def _check_relevance(cfg: Config, overrides: dict[str, str]) -> None:
    """Every ``--set`` override means something under the others (:data:`RELEVANCE`), or one line."""
    for key, text in overrides.items():
        for rule, applies, why in RELEVANCE:
            if (key == rule or key.startswith(rule + ".")) and not applies(cfg):
                raise ConfigError(f"--set {text}: {rule}: {why}; nothing was done")


# --------------------------------------------------------------------------- loading

def find(name_or_path: str) -> pathlib.Path:
    """Resolve an experiment name (``coco1k_dual``) or a path to a YAML file."""
    p = pathlib.Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    names = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"{name_or_path}: no such config; expected a YAML path or one of {names}")


class _ConfigLoader(yaml.SafeLoader):
    """YAML as configs use it: a key stated twice in one mapping and aliases (``*name``, which can
    expand a small file into gigabytes) are errors naming the line, not silently resolved."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed in configs", problem_mark=mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.MarkedYAMLError(problem=f"'{key}' is stated twice (first at line {seen[key]}); "
                                                   "merge the two blocks", problem_mark=key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


#: The largest batch a config may ask for (a larger one would only fill the memory before the first step).
MAX_BATCH = 1 << 16
#: The most draw groups (replicas x groups) a step may have: each folds its index below 1024 into the step's seed.
MAX_GROUPS = 1024

#: The largest config file read (a config is a few kB; this bounds what a wrong path can cost).
MAX_CONFIG_BYTES = 1 << 20


def _read_yaml(path: pathlib.Path) -> dict[str, Any]:
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: not a regular file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes; a config is at most {MAX_CONFIG_BYTES} bytes")
        with open(path) as f:
            data = yaml.load(f, Loader=_ConfigLoader) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML: {what}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping at the top level")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _resolve_file(path: pathlib.Path, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[tuple[str, dict]]]:
    """Merged raw mapping and the chain of (file, mapping) layers, base first."""
    key = str(path.resolve())
    if key in seen:
        chain = [pathlib.Path(p).name for p in seen] + [path.name]
        raise ConfigError(f"{path.name}: base: cycle ({' -> '.join(chain)})")
    raw = _read_yaml(path)
    base_name = raw.pop("base", None)
    layers: list[tuple[str, dict]] = []
    merged: dict[str, Any] = {}
    if base_name is not None:
        if not isinstance(base_name, str):
            raise ConfigError(f"{path.name}: base: expected a config name, got {base_name!r}")
        try:
            base_path = find(base_name) if not base_name.endswith((".yaml", ".yml")) else path.parent / base_name
        except ConfigError as e:
            raise ConfigError(f"{path.name}: base: {e}") from None
        merged, layers = _resolve_file(base_path, seen + (key,))
    layers.append((path.name, raw))
    return _merge(merged, raw), layers


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (['a', 'b'], value), the value parsed as YAML (ints, floats, bools, lists)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.path=value")
    key, value = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {text}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return keys, parsed


def _check_layer(layer: dict[str, Any], source: str) -> None:
    """Validate one file's keys and types against the schema, naming the file."""
    _coerce(layer, Config, source, "")


def load(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Load a named experiment (or YAML path), apply ``a.b=c`` overrides and validate."""
    path = find(name_or_path)
    merged, layers = _resolve_file(path)
    for fname, layer in layers:
        _check_layer(layer, fname)
    set_keys: dict[str, str] = {}
    for text in overrides or []:
        keys, value = parse_override(text)
        set_keys[".".join(keys)] = text
        layer: dict[str, Any] = {}
        node = layer
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        _check_layer(layer, f"--set {text}")
        merged = _merge(merged, layer)
    merged.setdefault("name", path.stem)
    cfg = _coerce(merged, Config, path.name, "")
    _validate(cfg, path.name, set_keys)
    _check_relevance(cfg, set_keys)
    if not cfg.workdir:
        cfg.workdir = os.path.join("runs", cfg.name)
    _expand_workdir(cfg)
    attach(cfg, cfg)
    return cfg


def _expand_workdir(cfg: Config) -> None:
    """Replace ``{workdir}`` in data paths and model.pretrained (demo data lives in the workdir), and
    ``{weights_dir}`` in model.pretrained."""
    for ds in (cfg.data.labelled, cfg.data.unlabelled, cfg.data.val, cfg.data.unlabelled_eval):
        ds.records = ds.records.replace("{workdir}", cfg.workdir)
        ds.annotations = ds.annotations.replace("{workdir}", cfg.workdir)
    m = cfg.model
    m.pretrained = m.pretrained.replace("{workdir}", cfg.workdir).replace("{weights_dir}", m.weights_dir.rstrip("/"))


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m posedual_tf.config",
                                 description="Print a resolved experiment config.")
    ap.add_argument("--config", required=True, help=f"name ({', '.join(available())}) or YAML path")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    args = ap.parse_args(argv)
    try:
        cfg = load(args.config, args.set)
    except ConfigError as e:
        raise SystemExit(f"config error: {e}")
    print(dump(cfg), end="")


if __name__ == "__main__":
    main()
