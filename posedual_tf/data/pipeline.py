"""tf.data input pipelines: person crops, labelled + unlabelled mixing, eval crops.

Training batches carry uint8 crops and crop-space joints; the training step normalises the crops and
encodes the Gaussian targets on the device (:class:`posedual_tf.codec.TrainingInputs`). Evaluation
crops come normalised, with their targets.

* The records are read through :mod:`posedual_tf.data.sources` (each source opened once per run).
* :func:`labelled_parser`, :func:`unlabelled_parser` and :func:`eval_parser` make one sample.
* :func:`train_dataset` mixes the streams as the reference: an epoch is a uniform permutation of
  the unlabelled people, each paired with a labelled person drawn uniformly with replacement;
  :func:`eval_dataset` serves GT or detected boxes with decode meta.

Every random draw is stateless and seeded per epoch and element, so the same seed gives the same
batches.

Example (the datasets of a whole run: :class:`posedual_tf.task.PoseTask`):
    >>> from posedual_tf.data.pipeline import epoch_order
    >>> order = epoch_order(5, 5, seed=1, epoch=0, sampling="permutation")
    >>> sorted(int(i) for i in order)                               # every person once per epoch
    [0, 1, 2, 3, 4]
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import tensorflow as tf

from posedual_tf import aug_paths, codec, geometry, joints as joint_sets
from posedual_tf.config import DataConfig, MethodConfig
from posedual_tf.data import augment, corrupt, records
from posedual_tf.data.settings import EvalDataSettings, TrainDataSettings
from posedual_tf.data.sources import Source, Sources, open_source, person_fetcher

AUTOTUNE = tf.data.AUTOTUNE


def epoch_order(n: int, size: int, seed: int, epoch, sampling: str) -> tf.Tensor:
    """``size`` person numbers in ``[0, n)`` for one epoch (int64 tensor).

    ``permutation``: uniform permutations of all ``n`` people back to back (one per epoch when
    ``size == n``, the reference DataLoader's shuffle); ``replacement``: independent uniform draws
    (the reference's labelled indices).
    """
    epoch = tf.cast(epoch, tf.int64)
    if sampling == "replacement":
        return tf.random.stateless_uniform([size], tf.stack([tf.constant(seed, tf.int64), epoch]), minval=0,
                                           maxval=n, dtype=tf.int64)
    rounds = max(1, math.ceil(size / n))
    perms = [tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), tf.stack([tf.constant(seed, tf.int64), epoch * 1000 + r])) for r in range(rounds)]
    return tf.concat(perms, 0)[:size]


# ------------------------------------------------------------------------------ one sample

class SampleMaker:
    """Decode, crop, normalise and encode targets for one person, as the reference's ``__getitem__``."""

    def __init__(self, data: DataConfig, heatmaps: codec.HeatmapCodec | None = None):
        self.data = data
        self.codec = heatmaps or codec.HeatmapCodec(data.image_size, data.heatmap_size, data.sigma)
        self.image_size = self.codec.image_size
        self.aspect = self.image_size[0] / self.image_size[1]
        self.inputs = codec.InputNormaliser.from_config(data)
        #: ``data.crops_on=device``: the training parsers ship decoded windows, the step warps them
        self.on_device = data.crops_on == "device"

    def normalise(self, crop):
        return self.inputs.normalise(crop)

    def draw_geometry(self, rng: augment.StatelessRng):
        """Scale factor, rotation and flip with the reference distributions."""
        d = self.data
        sf, rf = d.scale_factor, d.rot_factor
        scale = tf.clip_by_value(rng.normal([]) * sf + 1.0, 1.0 - sf, 1.0 + sf)
        rot = tf.clip_by_value(rng.normal([]) * rf, -2.0 * rf, 2.0 * rf)
        rot = tf.where(rng.uniform([]) <= d.rot_prob, rot, 0.0)
        flip = (rng.uniform([]) <= 0.5) & d.flip
        return scale, rot, flip

    def half_body(self, rng, joints, vis, center, scale):
        """Reference half-body crop (only when PROB_HALF_BODY fires)."""
        d = self.data
        upper = tf.constant([1.0 if u in joint_sets.UNION_UPPER else 0.0 for u in range(joint_sets.NUM_UNION)])
        visible = tf.cast(vis > 0, tf.float32)
        n_up = tf.reduce_sum(visible * upper)
        n_lo = tf.reduce_sum(visible * (1.0 - upper))
        pick_upper = ((rng.normal([]) < 0.5) & (n_up > 2)) | ~(n_lo > 2)
        chosen = visible * tf.where(pick_upper, upper, 1.0 - upper)
        fire = (tf.reduce_sum(visible) > d.num_joints_half_body) & (rng.uniform([]) < d.prob_half_body) \
            & (tf.reduce_sum(chosen) >= 2)
        big = 1e9
        sel = chosen[:, None] > 0
        lo = tf.reduce_min(tf.where(sel, joints, big), axis=0)
        hi = tf.reduce_max(tf.where(sel, joints, -big), axis=0)
        c = tf.math.divide_no_nan(tf.reduce_sum(joints * chosen[:, None], 0), tf.reduce_sum(chosen))
        wh = hi - lo
        _, s = geometry.tf_box_to_center_scale(tf.concat([lo, wh], 0), self.aspect, enlarge=1.5)
        return tf.where(fire, c, center), tf.where(fire, s, scale)

    def place(self, elem, scale_mult, rot, flip, rng=None, half_body: bool = False):
        """Where one person's crop samples its image, without decoding it: ``(window, inverse, joints, vis,
        center, scale)``: ``window = [y, x, h, w]`` (int32) the part of the image the crop reads,
        ``inverse [2, 3]`` crop pixel -> window pixel (a flip folded in), joints in crop space."""
        size = elem["size"]
        height, width = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
        center, scale = geometry.tf_box_to_center_scale(elem["box"], self.aspect)
        joints, vis = elem["joints"], elem["vis"]
        if half_body:
            center, scale = self.half_body(rng, joints, vis, center, scale)
        scale = scale * scale_mult
        fj, fv = codec.flip_joints(joints, vis, width, joint_sets.UNION_FLIP_PAIRS)
        joints = tf.where(flip, fj, joints)
        vis = tf.where(flip, fv, vis)
        center = tf.where(flip, tf.stack([width - 1.0 - center[0], center[1]]), center)
        m = geometry.tf_affine_matrix(center[None], scale[None], rot[None], self.image_size)[0]
        inv = geometry.tf_affine_matrix(center[None], scale[None], rot[None], self.image_size, inverse=True)[0]
        # a flip is folded into the sampling: mirrored image at q == original image at (W - 1 - q_x, q_y)
        mirror = tf.where(flip, tf.constant([[-1.0, 0.0], [0.0, 1.0]]), tf.eye(2))
        shift = tf.where(flip, tf.stack([width - 1.0, 0.0]), tf.zeros([2]))
        inv = tf.concat([mirror @ inv[:, :2], (mirror @ inv[:, 2:]) + shift[:, None]], axis=1)
        lo, window = geometry.tf_sampled_window(inv, width, height, self.image_size)
        inv = tf.concat([inv[:, :2], inv[:, 2:] - lo[:, None]], axis=1)
        moved = geometry.tf_transform_points(joints[None], m[None])[0]
        joints = tf.where(vis[:, None] > 0, moved, joints)
        return window, inv, joints, vis, center, scale

    def crop(self, elem, scale_mult, rot, flip, rng=None, half_body: bool = False):
        """Crop one person; returns the crop (float, integer values as the reference's uint8 warp), joints in crop space, visibility, c, s.

        Only the part of the image that the crop samples is decoded (JPEG partial decode).
        """
        window, inv, joints, vis, center, scale = self.place(elem, scale_mult, rot, flip, rng, half_body)
        img = tf.cast(records.decode_window(elem["encoded"], window), tf.float32)
        # cv2.warpAffine writes uint8: the reference's crops (and so its RandAugment input) are rounded.
        # The channels are put in the network's order after the warp (per channel: the same pixels), on
        # the crop rather than the bigger window.
        crop = tf.round(geometry.tf_warp(img[None], inv[None], self.image_size)[0])
        crop = self.inputs.to_model_order(crop, levels=True)
        crop.set_shape([self.image_size[1], self.image_size[0], 3])
        return crop, joints, vis, center, scale

    def window(self, elem, scale_mult, rot, flip, rng=None, half_body: bool = False):
        """The host's part of a crop made on the device (``data.crops_on=device``): ``{window, inverse,
        joints, vis}``, the decoded window (uint8, RGB) and what :class:`codec.DeviceCrops` needs to
        warp it into the crop :meth:`crop` makes."""
        window, inv, joints, vis, _, _ = self.place(elem, scale_mult, rot, flip, rng, half_body)
        return {"window": records.decode_window(elem["encoded"], window), "inverse": inv,
                "joints": joints, "vis": vis}

    def targets(self, joints, vis):
        return self.codec.encode(joints, vis)


def pixels(crop):
    """A crop (integer grey levels in float, as :meth:`SampleMaker.crop` and the augmentations make them)
    as the uint8 the pipeline ships; the training step normalises it (:class:`codec.TrainingInputs`)."""
    return tf.cast(crop, tf.uint8)


def labelled_parser(maker: SampleMaker):
    """``(elem, seed) -> {image, joints, vis, person}`` with the reference training augmentation: the
    uint8 crop, its crop-space joints and visibility (the training step encodes the targets from them,
    :class:`codec.TrainingInputs`) and ``person``, the person's number in file order. With
    ``data.crops_on=device`` the crop is ``window`` and ``inverse`` instead (:meth:`SampleMaker.window`)."""

    def parse(elem, seed):
        rng = augment.StatelessRng(tf.stack([seed, 11]))
        scale, rot, flip = maker.draw_geometry(rng)
        half_body = maker.data.prob_half_body > 0
        if maker.on_device:
            return {**maker.window(elem, scale, rot, flip, rng, half_body), "person": elem["person"]}
        crop, joints, vis, _, _ = maker.crop(elem, scale, rot, flip, rng, half_body=half_body)
        return {"image": pixels(crop), "joints": joints, "vis": vis, "person": elem["person"]}

    return parse


def unlabelled_parser(maker: SampleMaker, method: MethodConfig, labelled_mask: np.ndarray):
    """``(elem, seed) -> {image, [image_<POLICY>], weight, person}``: the easy view (uint8) and the dataset copies
    the hard paths start from (RA, TA, YOCORA, YOCOTA: MultiAugs lib/dataset/JointsDataset.py and lib/utils/augments.py: ``random_YOCO``), with the easy view's geometry.

    ``weight`` is 1 on every union id of the labelled set (reference lib/dataset/mix_coco_coco.py: ``Mixed_COCO_COCO_Dataset.__getitem__``).
    With ``data.crops_on=device`` the easy view is ``window`` and ``inverse`` instead (no dataset copies:
    the config check allows none).
    """
    m = method
    weight = tf.constant(labelled_mask, tf.float32)
    policies = aug_paths.image_policies(m)

    def parse(elem, seed):
        rng = augment.StatelessRng(tf.stack([seed, 23]))
        scale, rot, flip = maker.draw_geometry(rng)
        if maker.on_device:
            placed = maker.window(elem, scale, rot, flip)
            return {"window": placed["window"], "inverse": placed["inverse"], "weight": weight,
                    "person": elem["person"]}
        crop, _, _, _, _ = maker.crop(elem, scale, rot, flip)
        out = {"image": pixels(crop), "weight": weight, "person": elem["person"]}
        copy = {"RA": lambda: augment.rand_augment(crop, rng, m.rand_aug_num_ops, m.rand_magnitude),
                "TA": lambda: augment.trivial_augment(crop, rng)}
        for policy in policies:
            if policy.startswith("YOCO"):
                a, b = copy[policy[4:]](), copy[policy[4:]]()
                aug = augment.yoco(a, b, rng.uniform([]))
            else:
                aug = copy[policy]()
            out[f"image_{policy}"] = pixels(aug)
        return out

    return parse


def eval_parser(maker: SampleMaker):
    """``elem -> {image, center, scale, score, image_id, ann_id, raw_box, area, target, weight}``, no augmentation."""

    def parse(elem):
        zero = tf.constant(0.0)
        crop, joints, vis, center, scale = maker.crop(elem, 1.0, zero, tf.constant(False))
        target, weight = maker.targets(joints, vis)
        area = (scale[0] * geometry.PIXEL_STD) * (scale[1] * geometry.PIXEL_STD)
        return {"image": maker.normalise(crop), "center": center, "scale": scale, "score": elem["score"],
                "image_id": elem["image_id"], "ann_id": elem["ann_id"], "raw_box": elem["raw_box"], "area": area,
                "target": target, "weight": weight}

    return parse


# ------------------------------------------------------------------------------ batches of people

#: Decoded windows (``data.crops_on=device``) are padded to multiples of this many pixels in each
#: direction, so that a compiled step sees a bounded number of shapes (640-pixel images: at most 5 x 5).
WINDOW_BUCKET = 128


def _bucketed(part: dict) -> dict:
    """A batch's ``window`` padded (zeros, bottom and right) to the next multiple of :data:`WINDOW_BUCKET`."""
    if "window" not in part:
        return part
    w = part["window"]
    shape = tf.shape(w)
    rows = (-shape[1]) % WINDOW_BUCKET
    cols = (-shape[2]) % WINDOW_BUCKET
    return {**part, "window": tf.pad(w, [[0, 0], [0, rows], [0, cols], [0, 0]])}


def batch_people(ds: tf.data.Dataset, size: int) -> tf.data.Dataset:
    """``ds`` (people, or tuples of streams' people) in batches of ``size``; decoded windows of
    ``data.crops_on=device`` are padded to the batch's largest, then to :data:`WINDOW_BUCKET` steps
    (zeros read as the black border, which is what the warp gives outside the image)."""
    spec = ds.element_spec
    if not any("window" in part for part in (spec if isinstance(spec, tuple) else (spec,))):
        return ds.batch(size)
    return ds.padded_batch(size).map(lambda *b: tuple(_bucketed(p) for p in b) if len(b) > 1 else _bucketed(b[0]))


# ------------------------------------------------------------------------------ datasets

def _options() -> tf.data.Options:
    opts = tf.data.Options()
    opts.experimental_deterministic = True
    # the streams are sharded by person (below), never by file
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return opts


def _parallel_calls(data: DataConfig):
    """``data.num_parallel_calls``, or tf.data's autotuning for 0."""
    return data.num_parallel_calls if data.num_parallel_calls > 0 else AUTOTUNE


def _element_seeds(n, seed: int, epoch) -> tf.Tensor:
    return tf.random.stateless_uniform(tf.reshape(n, [1]), tf.stack([tf.constant(seed, tf.int64), epoch]),
                                       minval=None, maxval=None, dtype=tf.int64)


def epoch_steps(settings: TrainDataSettings, sources: Sources | None = None,
                batch_size: int | None = None) -> tuple[int, int]:
    """(steps per epoch, steps of the reference epoch: the unlabelled set, or the labelled set for
    supervised training, in batches with the last one partial). ``sources``: the run's (opened here if
    not given)."""
    sources = sources or Sources(settings.data)
    global_batch = batch_size or settings.batch_size
    epoch_set = sources.unlabelled if settings.mixed else sources.labelled
    ref_steps = math.ceil(epoch_set.num_instances / global_batch)
    return settings.steps_per_epoch or ref_steps, ref_steps


def _epoch_size(settings: TrainDataSettings, sources: Sources, global_batch: int, replicas: int) -> tuple[int, int]:
    """(steps per epoch, positions per epoch). Every batch is full under several replicas, several
    ``train.replica_batch`` groups or a set ``train.steps_per_epoch``; otherwise an epoch is the epoch set
    once, its last batch partial (the reference)."""
    steps, ref_steps = epoch_steps(settings, sources, global_batch)
    several_groups = settings.replica_batch > 0 and global_batch > settings.replica_batch
    if steps != ref_steps or replicas > 1 or several_groups:
        return steps, steps * global_batch
    return steps, (sources.unlabelled if settings.mixed else sources.labelled).num_instances


def train_dataset(settings: TrainDataSettings, sources: Sources | None = None, *, seed: int | None = None,
                  batch_size: int | None = None, input_context: tf.distribute.InputContext | None = None,
                  counter: corrupt.CorruptionCounter | None = None, start_step: int = 0) -> tf.data.Dataset:
    """The training stream (endless); :func:`epoch_steps` gives its steps per epoch.

    Supervised (no unlabelled records): batches of ``{image, target, weight}``; otherwise batches of
    ``(labelled, unlabelled)`` dicts. An epoch is the unlabelled set (supervised: the labelled set)
    in a fresh uniform permutation of its people, the last batch partial as the reference; each
    unlabelled person is paired with a labelled one drawn as ``data.labelled_sampling`` says
    (reference: uniform, with replacement). With ``train.steps_per_epoch`` set, an epoch is that
    many full batches. Under a multi-replica strategy (``input_context``) or when the batch holds several
    ``train.replica_batch`` groups (so that every device count cuts the same groups) every batch is
    full; under a strategy the
    batch is the per-replica one, and input pipeline ``i`` of ``n`` takes positions ``i, i + n, ...``
    of the same epoch order: the workers together see every selected person, whatever their number.
    People whose record fails to parse or decode are dropped and reported to ``counter``.
    ``start_step``: the stream begins there (a resumed run): the epoch orders and every draw are the
    ones an uninterrupted run would see, and nothing before that step is read.
    ``settings``: the stream's values (:class:`~posedual_tf.data.settings.TrainDataSettings`, the run's
    codec included); ``sources``: the run's record sources (opened here when not given).
    """
    seed = settings.seed if seed is None else seed
    global_batch = batch_size or settings.batch_size
    workers = input_context.num_input_pipelines if input_context else 1
    worker = input_context.input_pipeline_id if input_context else 0
    replicas = input_context.num_replicas_in_sync if input_context else 1
    if global_batch % replicas:
        raise ValueError(f"train.batch_size: {global_batch} does not split over {replicas} replicas")
    per_replica = global_batch // replicas
    calls = _parallel_calls(settings.data)
    sources = sources or Sources(settings.data)
    streams = _streams(settings, sources, seed)       # opens the labelled set first
    steps, size = _epoch_size(settings, sources, global_batch, replicas)
    first_epoch, within = divmod(int(start_step), steps)
    skip = within * (replicas // workers) * per_replica      # this pipeline's people in the steps already done

    def stream(s, epoch):
        order = epoch_order(s.source.num_instances, size, s.seed, epoch, s.sampling)[worker::workers]
        n = tf.shape(order, out_type=tf.int64)[0]
        seeds = _element_seeds(n, s.seed + 7, epoch)
        start = tf.where(tf.equal(epoch, first_epoch), tf.constant(skip, tf.int64), tf.constant(0, tf.int64))
        ds = tf.data.Dataset.from_tensor_slices((tf.range(n)[start:], order[start:], seeds[start:]))
        ds = ds.map(lambda pos, i, e_seed: (pos, s.parse(s.fetch(i), e_seed)), num_parallel_calls=calls).ignore_errors()
        return corrupt.counted(ds, n, order, counter, s.name, s.source.index, first=start)

    def one_epoch(epoch):
        parts = tuple(stream(s, epoch) for s in streams)
        return batch_people(parts[0] if len(parts) == 1 else tf.data.Dataset.zip(parts), per_replica)

    ds = tf.data.Dataset.range(first_epoch, 1 << 62).flat_map(one_epoch)
    return ds.prefetch(AUTOTUNE).with_options(_options())


@dataclasses.dataclass(frozen=True)
class _Stream:
    """One stream of a training batch: its people, how they are drawn and how one is made."""
    name: str
    source: Source
    sampling: str
    seed: int
    fetch: Any
    parse: Any


def _streams(settings: TrainDataSettings, sources: Sources, seed: int) -> tuple[_Stream, ...]:
    """The labelled stream, and for a mixed run the unlabelled one (seed + 1, a permutation per epoch)."""
    maker = SampleMaker(settings.data, settings.heatmaps)
    lab = sources.labelled
    out = [_Stream("labelled", lab, settings.labelled_sampling, seed, person_fetcher(lab), labelled_parser(maker))]
    if settings.mixed:
        unl = sources.unlabelled
        out.append(_Stream("unlabelled", unl, "permutation", seed + 1, person_fetcher(unl),
                           unlabelled_parser(maker, settings.method, lab.joint_set.union_mask())))
    return tuple(out)


def step_batches(settings: TrainDataSettings, sources: Sources | None = None, *, seed: int | None = None,
                 batch_size: int | None = None, start_step: int = 0, replicas: int = 1) -> tf.data.Dataset:
    """``(step, dropped, batch)`` for every step from ``start_step`` on: the batch of one training step, as a function of the step alone
    (what tf.data service workers run; :mod:`posedual_tf.data.service`).

    The batch holds the people at the step's positions of the epoch orders of :func:`train_dataset`
    (the whole global batch: ``replicas`` only decides whether every batch is full), made with the same
    draws, so without damaged records it is the local pipeline's batch of that step. Graph ops only. A person whose record fails to parse or decode is left out of
    its step's batch (the local pipeline fills the place from the next step's people instead) and
    counted in ``dropped`` (``{stream name: count}``); a mixed batch keeps as many pairs as both
    streams have people.
    """
    seed = settings.seed if seed is None else seed
    global_batch = batch_size or settings.batch_size
    calls = _parallel_calls(settings.data)
    sources = sources or Sources(settings.data)
    streams = _streams(settings, sources, seed)
    steps, size = _epoch_size(settings, sources, global_batch, replicas)

    def people(s, epoch, lo, hi):
        order = epoch_order(s.source.num_instances, size, s.seed, epoch, s.sampling)
        seeds = _element_seeds(tf.constant(size, tf.int64), s.seed + 7, epoch)
        ds = tf.data.Dataset.from_tensor_slices((order[lo:hi], seeds[lo:hi]))
        made = batch_people(ds.map(lambda i, e_seed: s.parse(s.fetch(i), e_seed), num_parallel_calls=calls,
                                   deterministic=True).ignore_errors(), global_batch).get_single_element()
        return made, (hi - lo) - tf.shape(made["person"], out_type=tf.int64)[0]

    def batch_of(step):
        epoch, within = step // steps, step % steps
        lo = within * global_batch
        hi = tf.minimum(lo + global_batch, size)
        made = [people(s, epoch, lo, hi) for s in streams]
        dropped = {s.name: d for s, (_, d) in zip(streams, made)}
        batches = [b for b, _ in made]
        if len(batches) == 1:
            return step, dropped, batches[0]
        keep = tf.reduce_min([tf.shape(b["person"])[0] for b in batches])
        return step, dropped, tuple(tf.nest.map_structure(lambda t: t[:keep], b) for b in batches)

    return tf.data.Dataset.range(int(start_step), 1 << 62).map(batch_of).with_options(_options())


def eval_dataset(settings: EvalDataSettings, batch_size: int | None = None,
                 counter: corrupt.CorruptionCounter | None = None, split: str = "val",
                 source: Source | None = None) -> tuple[tf.data.Dataset, Source]:
    """Evaluation crops of ``data.<split>`` (``val`` or ``unlabelled_eval``): GT boxes, or for ``val``
    detected boxes with score >= test.image_thre, in file order; people whose record fails to parse or
    decode are dropped and reported to ``counter``. ``source``: the split's, already open (opened here
    when not given)."""
    src = source or open_source(getattr(settings.data, split), split)
    calls = _parallel_calls(settings.data)
    fetch = person_fetcher(src)
    parse = eval_parser(SampleMaker(settings.data, settings.heatmaps))
    order = tf.range(src.num_instances, dtype=tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(order).map(lambda i: (i, parse(fetch(i))), num_parallel_calls=calls)
    ds = corrupt.counted(ds.ignore_errors(), src.num_instances, order, counter, split, src.index)
    thre = settings.detection_threshold
    if thre is not None and split == "val":
        ds = ds.filter(lambda e: e["score"] >= thre)
    return ds.batch(batch_size or settings.batch_size).prefetch(AUTOTUNE), src


def describe(batch: Any) -> dict[str, tuple]:
    """Shapes of a batch's tensors (for logs)."""
    return tf.nest.map_structure(lambda t: tuple(t.shape), batch)
