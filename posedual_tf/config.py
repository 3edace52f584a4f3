"""Typed experiment configs.

A named experiment is a YAML file in ``posedual_tf/configs/`` (installed with the package); it may start with ``base: other_name`` to
inherit another file and state only what differs. Values are checked against the dataclass
schema below; an unknown key, a wrong type or a bad choice is a one-line
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

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"     # shipped inside the package


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclasses.dataclass
class ModelConfig:
    backbone: Literal["resnet", "hrnet"] = "resnet"
    #: ResNet depth (18, 34, 50, 101, 152).
    depth: int = 18
    #: HRNet width (32 or 48).
    hrnet_width: int = 32
    num_joints: int = 24
    style: Literal["pytorch", "caffe"] = "pytorch"
    num_deconv_layers: int = 3
    deconv_filters: list[int] = dataclasses.field(default_factory=lambda: [256, 256, 256])
    deconv_kernels: list[int] = dataclasses.field(default_factory=lambda: [4, 4, 4])
    final_conv_kernel: int = 1
    #: Multiplies every channel count; 1.0 is the reference network. Smaller for tests/demos.
    width_multiplier: float = 1.0
    #: Initial weights, loaded into every network before training (the reference's MODEL.PRETRAINED):
    #: a .pth file (torchvision/HRNet ImageNet, the two-backbone PoseDual file, a reference checkpoint)
    #: or a folder of converted ``net*.weights.h5``. ``{weights_dir}`` expands to ``model.weights_dir``.
    #: ``none`` = random initialisation, said in the log. Training refuses to start while it is unset.
    pretrained: str = ""
    #: Folder of the initial weights files, laid out as the reference's ``models/pytorch/imagenet/``.
    weights_dir: str = "models/pytorch/imagenet"


@dataclasses.dataclass
class DatasetConfig:
    #: TFRecord prefix made by tfrecords_tools (``PREFIX-*-of-*.tfrecord`` + ``PREFIX.json``).
    records: str = ""
    #: Source dataset, for messages and the converter command: coco, coco_wild, aic, mpii, custom.
    source: Literal["coco", "coco_wild", "coco_det", "aic", "mpii", "custom", "synthetic"] = "coco"
    #: Keep only the first N person instances in file order (reference TRAIN_LEN); 0 = all.
    max_instances: int = 0
    #: Ground-truth annotation file, needed by COCO evaluation.
    annotations: str = ""


@dataclasses.dataclass
class SyntheticConfig:
    """Sizes of the synthetic people dataset that demo configs generate into their workdir."""

    labelled_images: int = 60
    unlabelled_images: int = 300
    val_images: int = 40
    image_height: int = 128
    image_width: int = 128
    seed: int = 0


@dataclasses.dataclass
class DataConfig:
    labelled: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    #: Unlabelled set; empty records = supervised training only.
    unlabelled: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    val: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    #: The unlabelled people with their ground truth (records of GT boxes + annotations), evaluated
    #: beside data.val at every validation (``unl_*`` in the logs): how training fares on the images it
    #: learns from without labels (the synthetic demo sets have it; empty = not evaluated).
    unlabelled_eval: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    #: Network input [W, H].
    image_size: list[int] = dataclasses.field(default_factory=lambda: [192, 256])
    #: Heatmap [w, h].
    heatmap_size: list[int] = dataclasses.field(default_factory=lambda: [48, 64])
    sigma: float = 2.0
    color_rgb: bool = False
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.229, 0.224, 0.225])
    flip: bool = True
    scale_factor: float = 0.25
    rot_factor: float = 30.0
    rot_prob: float = 0.6
    prob_half_body: float = 0.0
    num_joints_half_body: int = 8
    #: How an epoch draws labelled people: ``replacement`` (uniform with replacement, the reference's
    #: mixed loader), ``permutation`` (each person once, the reference's supervised loader), ``auto``
    #: (replacement when mixed with unlabelled data, else permutation).
    labelled_sampling: Literal["auto", "permutation", "replacement"] = "auto"
    num_parallel_calls: int = -1
    #: Records that fail to parse or decode are dropped, counted and reported; training stops (one line
    #: naming the worst shard) once they exceed this fraction of the people read.
    max_corrupt_fraction: float = 0.001
    #: Only for source 'synthetic' (demo configs).
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)


@dataclasses.dataclass
class MethodConfig:
    name: Literal["supervised", "cons", "dual"] = "dual"
    #: Joint cutout patches per hard view (reference MASK_JOINT_NUM).
    mask_joint_num: int = 0
    #: RandAugment on the hard view (reference CONS_RAND_AUG).
    rand_aug: bool = False
    rand_aug_num_ops: int = 2
    rand_magnitude: int = 10
    #: Batch affine between easy and hard view (reference UNSUP_TRANSFORM).
    unsup_transform: bool = True
    unsup_rot_prob: float = 0.8
    align_corners: bool = False
    #: Weight of each network's supervised loss (0.5 for PoseDual, 1 for PoseCons/Supervised).
    sup_weight: float = 1.0
    cons_weight: float = 1.0
    #: MultiAugs hard paths (MultiAugs lib/models/pose_dual.py: ``PoseCotrain.forward``), run in this order; each is a hard view per network
    #: with its own forward pass and consistency loss to the same warped teacher. A path is ``A60`` (the
    #: batch affine only), or an optional first image-level copy (RA, TA, YOCORA, YOCOTA) then batch ops
    #: (JC, JO, CO, CM, MU, and the composites JOCO = JO+CO, JCCM = JC+CM) joined by ``+``, applied left
    #: to right (a chain). Repeating a path is the reference's repeat mode. Empty: the single PoseDual
    #: hard view set by ``rand_aug`` and ``mask_joint_num``.
    paths: list[str] = dataclasses.field(default_factory=list)
    #: JO patches per sample (KP_CutMix_JOINT_NUM).
    jo_joint_num: int = 2
    #: CO and CM holes per sample (MASK_HOLES_NUM_CO / _CM; see fixes.hole_counts).
    co_holes: int = 5
    cm_holes: int = 2
    #: MultiAugs loss options, off in every published run (MultiAugs lib/core/loss.py): one MSE of the mean of a
    #: network's path maps; per (sample, joint) masking by the warped teacher's peak > conf_thresh;
    #: spatial softmax of prediction and target before the MSE.
    heat_fusion: bool = False
    conf_masking: bool = False
    conf_thresh: float = 0.5
    sharpen_pred: bool = False
    #: Which views make a consistency pair (the collapse study, docs/collapse_study.md): ``easy_hard``
    #: (the reference: teacher on the easy view, student on the hard one), ``same`` (teacher and student
    #: each on an independent draw of the hard view: the same difficulty), ``reversed`` (teacher on the
    #: hard view, student on the easy one). The last two take one path and the reference pass schedule.
    consistency_pair: Literal["easy_hard", "same", "reversed"] = "easy_hard"


@dataclasses.dataclass
class FixesConfig:
    """Switches that fix reference oddities (docs/oddities.md). All off = the reference."""

    #: 1: cutout clamps x to W and y to H (the reference swaps them for non-square inputs).
    cutout_axes: bool = False
    #: 2: cutout picks joints only among the labelled set's ids, without replacement.
    cutout_supervised_joints: bool = False
    #: 4: teacher passes use BN running statistics and do not update them.
    teacher_bn_inference: bool = False
    #: 6: apply train.weight_decay (decoupled, AdamW) instead of ignoring it.
    weight_decay: bool = False
    #: 11: round heatmap centres with floor(x + 0.5) instead of int() truncation.
    target_rounding: bool = False
    #: 14: 'shift' post-process accepts p = 1 (bound 0 < p < size - 1).
    shift_bound: bool = False
    #: 19: PCKh "Mean@0.1" at threshold 0.10 (the reference uses 0.11).
    pckh_at_0_1: bool = False
    # MultiAugs oddities (docs/oddities.md), numbered as there:
    #: M1: JO boxes sit at the joint (the reference uses joint x as the row and y as the column).
    jo_axes: bool = False
    #: M2: JO pastes the in-image part of the moved source box (no zero fills on a size mismatch).
    jo_boxes: bool = False
    #: M3: CO/CM draw and clamp rows with H and columns with W (the reference swaps them).
    hole_axes: bool = False
    #: M4: with several paths, PoseDual's standalone CO path uses co_holes (not 4) and JCCM's CutMix
    #: cm_holes (not co_holes).
    hole_counts: bool = False
    #: M5: the consistency loss is the mean over paths (the reference sums: P times PoseDual's share).
    path_mean: bool = False
    #: Not an oddity of the reference at its input size: the box half-sizes (10-19 px) and joint jitter
    #: (10 px) of JC, JO, CO and CM were set for 192 px wide crops; true scales them by input width / 192
    #: (no change at 256x192).
    scaled_boxes: bool = False


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    lr_step: list[int] = dataclasses.field(default_factory=lambda: [20, 25])
    lr_factor: float = 0.1
    weight_decay: float = 1e-4
    #: Steps per epoch; 0 = the reference epoch (the unlabelled set, or the labelled set, in batches,
    #: the last one partial). Set, every batch is full.
    steps_per_epoch: int = 0
    mixed_precision: Literal["none", "mixed_bfloat16", "mixed_float16"] = "none"
    jit_compile: Literal["auto", "true", "false"] = "auto"
    #: Optimizer steps per call of the compiled training function. Keras (TensorFlow backend) waits for
    #: the device after every call, to turn the step's logs into numbers for the callbacks; with k steps
    #: per call it waits once per k steps and the host queues the steps in between (on a GPU: 10-100;
    #: docs/benchmarks.md). The callbacks see every k-th step, so the epoch's steps, log_every,
    #: checkpoint_every_steps and image_summary_every must be multiples of k. Same steps, same weights.
    steps_per_execution: int = 1
    #: Order of a consistency step's passes; all give the same outputs, gradients and running statistics
    #: (docs/benchmarks.md). reference: every pass its own call, one tape over both networks.
    #: per_network: both teachers first (BatchNorm updates deferred), then each network's sup and path
    #: passes and its gradient before the next network runs (one network's activations alive at a time).
    #: fused: as per_network, with a network's sup and paths as one call with per-group BatchNorm.
    pass_schedule: Literal["reference", "per_network", "fused"] = "reference"
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = "auto"
    #: People per BatchNorm and augmentation-draw group, as one reference GPU held them: each group of a
    #: replica's batch is normalised, permuted (CutMix, MixUp, JO's source) and drawn on its own, so the
    #: same recipe runs on any number of devices; the running statistics follow the first group, as
    #: DDP's rank 0 keeps them. A replica's share of batch_size must be a multiple of it. 0: each
    #: device's share is one group (BatchNorm over batch_size / devices).
    replica_batch: int = 0
    #: Every replica and group makes the same augmentation draws. Off (the reference): each draws its
    #: own, as the reference's DDP ranks did (docs/oddities.md M13).
    shared_draws: bool = False
    seed: int = 1314
    resume: bool = True
    #: Save a training checkpoint (networks, optimizer, step: the input position follows from it) every
    #: N optimizer steps, and at the end of every epoch; a killed run resumes at the last one.
    #: 1000 ResNet-18 PoseDual steps are about half an hour on a current GPU. 0 = epoch ends only.
    checkpoint_every_steps: int = 1000
    #: tf.config.experimental.enable_op_determinism(): a run resumed from a checkpoint ends with the
    #: same weights as an uninterrupted one (slower; see docs/benchmarks.md).
    deterministic: bool = False
    keep_checkpoints: int = 3
    #: Which validation number keeps the best weights: net 1's (PoseDual) or the mean of the networks'
    #: (MultiAugs' model_best); equal for single-network methods.
    select_best_by: Literal["net1", "mean"] = "net1"
    #: Validate every N epochs (and after the last).
    val_interval: int = 1
    log_every: int = 50
    image_summary_every: int = 500


@dataclasses.dataclass
class TestConfig:
    batch_size: int = 32
    flip_test: bool = False
    shift_heatmap: bool = True
    post_process: Literal["shift", "dark", "none"] = "shift"
    #: False: data.val.records are detection records (tfrecords_tools.detections) and boxes with
    #: score >= image_thre are evaluated; data.val.annotations stays the ground-truth json.
    use_gt_bbox: bool = True
    image_thre: float = 0.0
    in_vis_thre: float = 0.2
    oks_thre: float = 0.9
    nms: Literal["oks", "soft_oks", "none"] = "oks"
    #: Checkpoint evaluated by default (reference TEST.MODEL_FILE, for the record).
    model_file: str = ""
    #: Peaks (a joint's max heatmap value) below this count as background: evaluation reports the
    #: fraction of predicted peaks below it (``peaks_below``) beside their mean (``peak_mean``), and a
    #: consistency step logs it for its hard views (``low_peaks_N``). Near 1 = collapse.
    peak_threshold: float = 0.1
    #: Evaluate at most this many batches (0 = all), for quick checks.
    max_batches: int = 0
    #: OKS sigmas of a custom COCO-format joint set, one per joint in the set's order (empty: the set's
    #: own, from COCO's and CrowdPose's per-joint values; README, custom keypoint sets).
    oks_sigmas: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Config:
    #: Name of the experiment (the YAML file's stem).
    name: str = ""
    description: str = ""
    workdir: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    method: MethodConfig = dataclasses.field(default_factory=MethodConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    test: TestConfig = dataclasses.field(default_factory=TestConfig)
    fixes: FixesConfig = dataclasses.field(default_factory=FixesConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
        (len(m.deconv_filters) == m.num_deconv_layers == len(m.deconv_kernels),
         "model.deconv_filters", "num_deconv_layers entries (and as many deconv_kernels)"),
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
        (0 <= cfg.test.peak_threshold <= 1, "test.peak_threshold", "a float in [0, 1]"),
        (all(v > 0 for v in cfg.test.oks_sigmas), "test.oks_sigmas", "positive floats, one per joint"),
    ]
    for i, text in enumerate(cfg.method.paths):
        try:
            aug_paths.parse_path(text)
        except ValueError as e:
            checks.append((False, f"method.paths[{i}]", str(e)))
    for ok, key, expected in checks:
        if not ok:
            blame = next((f"--set {text}" for k, text in (overrides or {}).items()
                          if key == k or key.startswith(k + ".") or k.startswith(key + ".")), source)
            raise ConfigError(f"{blame}: {key}: expected {expected}")


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
    if not cfg.workdir:
        cfg.workdir = os.path.join("runs", cfg.name)
    _expand_workdir(cfg)
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
