"""The experiment schema: one dataclass per config section (``model``, ``data``, ``method``, ``fixes``,
``train``, ``test``), their defaults and what each field means. Loading, checking and ``--set``
overrides live in :mod:`posedual_tf.config`, which exports these classes too.

Example:
    >>> from posedual_tf.config_schema import Config
    >>> cfg = Config(name="mine")
    >>> cfg.data.image_size, cfg.train.batch_size > 0
    ([192, 256], True)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


class Checked:
    """A config section whose fields, once its config is loaded (:func:`posedual_tf.config.load`), are
    checked when assigned, as ``--set`` checks them: ``cfg.train.lr = "fast"`` is one ConfigError line and
    leaves the config as it was. (A list changed in place, ``cfg.data.image_size[0] = 5``, is not seen:
    assign the whole list.)"""

    __slots__ = ("_root", "_key")         # beside the fields, not among them (vars(), asdict() skip these)

    def __setattr__(self, name: str, value: Any) -> None:
        root = getattr(self, "_root", None)
        if root is None or name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        from posedual_tf import config

        config.check_assignment(root, self, name, value)


@dataclasses.dataclass
class ModelConfig(Checked):
    backbone: Literal["resnet", "hrnet"] = "resnet"
    #: ResNet depth (18, 34, 50, 101, 152).
    depth: int = 18
    #: HRNet width (32 or 48).
    hrnet_width: int = 32
    num_joints: int = 24
    style: Literal["pytorch", "caffe"] = "pytorch"
    #: One entry per deconvolution layer (the reference's NUM_DECONV_LAYERS is their number).
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
class DatasetConfig(Checked):
    #: TFRecord prefix made by tfrecords_tools (``PREFIX-*-of-*.tfrecord`` + ``PREFIX.json``).
    records: str = ""
    #: Source dataset, for messages and the converter command: coco, coco_wild, aic, mpii, custom.
    source: Literal["coco", "coco_wild", "coco_det", "aic", "mpii", "custom", "synthetic"] = "coco"
    #: Keep only the first N person instances in file order (reference TRAIN_LEN); 0 = all.
    max_instances: int = 0
    #: Ground-truth annotation file, needed by COCO evaluation.
    annotations: str = ""


@dataclasses.dataclass
class SyntheticConfig(Checked):
    """Sizes of the synthetic people dataset that demo configs generate into their workdir."""

    labelled_images: int = 60
    unlabelled_images: int = 300
    val_images: int = 40
    image_height: int = 128
    image_width: int = 128
    seed: int = 0


@dataclasses.dataclass
class DataConfig(Checked):
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
    #: Where training crops are warped: ``host`` (the input pipeline ships crops, as the reference's
    #: loader) or ``device`` (it ships the decoded part of each image as uint8, padded to 128-pixel
    #: steps, and the training step warps it, under XLA too; the same crops within a grey level). Not
    #: with RandAugment/TrivialAugment copies (method.rand_aug, RA/TA/YOCO paths), made on the host.
    crops_on: Literal["host", "device"] = "host"
    #: Records that fail to parse or decode are dropped, counted and reported; training stops (one line
    #: naming the worst shard) once they exceed this fraction of the people read.
    max_corrupt_fraction: float = 0.001
    #: Only for source 'synthetic' (demo configs).
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)


@dataclasses.dataclass
class MethodConfig(Checked):
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
class FixesConfig(Checked):
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
class TrainConfig(Checked):
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    lr_step: list[int] = dataclasses.field(default_factory=lambda: [20, 25])
    lr_factor: float = 0.1
    weight_decay: float = 1e-4
    #: Steps per epoch; 0 = the reference epoch (the unlabelled set, or the labelled set, in batches,
    #: the last one partial). Set, every batch is full.
    steps_per_epoch: int = 0
    #: ``none`` (float32, as the references train: the paper configs), ``mixed_bfloat16``,
    #: ``mixed_float16`` (loss scaling), or ``auto``: the faster for the machine (a GPU: bfloat16 from
    #: Ampere on, else float16; a CPU: bfloat16 if a measurement, made once and cached, finds it at
    #: least 5 % faster; posedual_tf.precision), said in a line
    #: and kept in train_result.json. The demo configs use auto; a paper config opts in with
    #: ``--set train.mixed_precision=auto``.
    mixed_precision: Literal["none", "mixed_bfloat16", "mixed_float16", "auto"] = "none"
    jit_compile: Literal["auto", "true", "false"] = "auto"
    #: Under XLA, one replica's short batches (an epoch's last; one short of a damaged record) are filled
    #: with empty places and a mask, so the step compiles once; their losses, BatchNorm statistics, draws
    #: and logs are the people's alone. false: each new batch size compiles the step again, and full
    #: steps keep BatchNorm's fused kernel (a mask costs 4-6 % per step on a CPU: docs/benchmarks.md).
    fill_short_batches: bool = True
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
    #: ``HOST:PORT`` of a tf.data service dispatcher: the training batches are made by its workers
    #: (``python -m posedual_tf.data_service``; docs/data_service.md), with the same epoch orders, draws
    #: and resume position as the local pipeline. Empty: made in this process.
    data_service: str = ""
    #: Seconds any wait on another process may last: the tasks of a TF_CONFIG cluster (to start, and in
    #: each collective of a step) and the tf.data service's batches. A wait says what it waits for after
    #: 30 s and ends the run with one line past this bound (a restart resumes). It must exceed the longest
    #: pause of one task that the others wait through (a validation pass, a checkpoint).
    peer_timeout_s: float = 1800.0
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
class TestConfig(Checked):
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
    #: The official PyTorch model of this config (the reference's TEST.MODEL_FILE): what
    #: ``python -m posedual_tf.convert_torch`` converts when ``--checkpoint`` is not given.
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
class Config(Checked):
    #: Name of the experiment (the YAML file's stem).
    name: str = ""
    #: One line saying what the experiment trains: printed when training starts, shown with the
    #: config in TensorBoard.
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
