"""The hard views of a method's paths (MultiAugs lib/models/pose_dual.py: ``PoseCotrain.forward``; reference
``PoseCons.forward``, ``PoseCotrain.forward``), built from the primitives of :mod:`posedual_tf.data.hard_views`.

* :class:`ViewSettings`: what the views read from a run's config, built once.
* :func:`build_views`: the hard views of every path of ``method.paths`` (composites JOCO = JO then CO,
  JCCM = JC then CM), one per network, warped by one shared per-sample theta, with their targets.
* :func:`build_pair_views`: the collapse study's other pairs (same difficulty, reversed) on one path.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from posedual_tf.aug_paths import Path, method_paths
from posedual_tf.config import FixesConfig, MethodConfig
from posedual_tf.data import augment, full_batches
from posedual_tf.data.hard_views import (cutmix, cutout, hole_draws, joint_cut_occlusion, joint_cutout, mixup,
                                         mixup_draws, occlusion_draws)

#: The reference's random_cutout default, used by PoseDual's standalone CO path (MultiAugs lib/utils/augments.py: ``random_cutout``).
DUAL_CO_DEFAULT_HOLES = 4


# ------------------------------------------------------------------------------ paths -> views

def _holes_for(op: str, path: Path, dual: bool, multi: bool, m, f) -> int:
    """Hole counts as the reference uses them (MultiAugs lib/models/pose_dual.py: ``PoseCotrain.forward``),
    unless ``fixes.hole_counts``. Its multi-path and repeat modes (``multi``: several paths) call
    ``random_cutout`` with its default of 4 holes for the standalone CO view and give JCCM's CutMix
    MASK_HOLES_NUM_CO; its chain mode (one path) uses MASK_HOLES_NUM_CO for CO and _CM for CM."""
    if not f.hole_counts and dual and multi:
        if op == "CO" and path.base is None and path.ops == ("CO",):
            return DUAL_CO_DEFAULT_HOLES
        if op == "CM" and path.name == "JCCM":
            return m.co_holes
    return m.co_holes if op == "CO" else m.cm_holes


#: The box geometry the reference's JC/JO/CO/CM use, set for 192 px wide crops: half-sizes and jitter.
REFERENCE_WIDTH, HALF_SIZE, JITTER = 192, (10, 19), 10.0


def box_geometry(width: int, scaled: bool) -> tuple[tuple[int, int], float]:
    """(half-size range, joint jitter) of the box ops on ``width`` px crops: the reference's, or scaled
    by ``width / 192`` under ``fixes.scaled_boxes`` (half-sizes at least 1 px)."""
    if not scaled:
        return HALF_SIZE, JITTER
    s = width / REFERENCE_WIDTH
    return (max(1, round(HALF_SIZE[0] * s)), max(1, round(HALF_SIZE[1] * s))), JITTER * s


@dataclasses.dataclass(frozen=True, eq=False)
class ViewSettings:
    """What the hard views read from a run's config (``method``, ``fixes``, the batch affine's ranges and
    the heatmap stride), built once by :meth:`from_config`.

    ``labelled_ids``: the union joint ids of the labelled set (JC's joints under
    ``fixes.cutout_supervised_joints``).
    """

    method: MethodConfig
    fixes: FixesConfig
    scale_factor: float
    rot_factor: float
    stride: float = 4.0
    labelled_ids: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, cfg, labelled_ids=None, heatmaps=None) -> "ViewSettings":
        """From a Config; ``heatmaps`` (a :class:`posedual_tf.codec.HeatmapCodec`) gives the stride (the
        config's own when not given)."""
        from posedual_tf.codec import HeatmapCodec

        heatmaps = heatmaps or HeatmapCodec.from_config(cfg)
        ids = None if labelled_ids is None else tuple(int(i) for i in labelled_ids)
        return cls(cfg.method, cfg.fixes, cfg.data.scale_factor, cfg.data.rot_factor, heatmaps.stride[0], ids)


def apply_op(op: str, rng, x, teacher, holes: int, views: ViewSettings, people=None):
    """One batch op of a path on ``x``; ``teacher`` = the heatmaps that place JC/JO; ``people``: the real
    people of a filled batch (its first places; None: every place), among whom CM, MU and JO draw partners."""
    m, f = views.method, views.fixes
    b, h, w = tf.shape(x)[0], int(x.shape[1]), int(x.shape[2])
    half, jitter = box_geometry(w, f.scaled_boxes)
    if op == "JC":
        allowed = views.labelled_ids if f.cutout_supervised_joints else None
        return joint_cutout(rng, x, teacher, m.mask_joint_num, allowed_joints=allowed, swap_axes=not f.cutout_axes,
                            stride=views.stride, jitter=jitter, half_size=half)[0]
    if op == "JO":
        draws = occlusion_draws(rng, teacher, m.jo_joint_num, stride=views.stride, jitter=jitter, half_size=half,
                                people=people)
        return joint_cut_occlusion(x, draws, transposed=not f.jo_axes, exact_boxes=f.jo_boxes)
    if op in ("CO", "CM"):
        d = hole_draws(rng, b, h, w, holes, swap_axes=not f.hole_axes, with_perm=op == "CM", half_size=half,
                       people=people)
        return cutout(x, d) if op == "CO" else cutmix(x, d)
    if op == "MU":
        return mixup(x, *mixup_draws(rng, b, people=people))
    raise ValueError(f"unknown hard-view op {op!r}")


def path_places_boxes(path: Path) -> bool:
    """Whether a path's ops need the teacher's heatmaps on the easy view (JC, JO place their boxes there)."""
    return any(op in ("JC", "JO") for op in path.ops)


def build_views(views: ViewSettings, rng, unl: dict, cut_teachers, teacher_maps):
    """The hard views of every path and their warped targets (MultiAugs and reference ``PoseCons.forward``, ``PoseCotrain.forward``).

    Args:
      unl: the unlabelled batch: ``image`` (the easy view) and ``image_<POLICY>`` dataset copies.
      cut_teachers: per network, the heatmaps that place its JC/JO (the other net's for PoseDual).
      teacher_maps: per network, the teacher heatmaps that become targets.
    Returns:
      ``(views, targets)``: ``views[p][n]`` = path p's view for net n, all warped by one per-sample theta
      drawn after every path; ``targets[n]`` = warped ``teacher_maps[n]``. Draws go op by op, net by net.
    """
    with tf.name_scope("hard_views"):
        out, theta = _hard_views(views, rng, unl, method_paths(views.method), cut_teachers)
        return out, [_warp(views, t, theta) for t in teacher_maps]


def _hard_views(views: ViewSettings, rng, unl, paths, cut_teachers):
    """``views[p][n]`` of ``paths`` for ``len(cut_teachers)`` networks, and the theta that warped them
    (None without method.unsup_transform)."""
    m, f = views.method, views.fixes
    dual, multi = len(cut_teachers) == 2, len(paths) > 1
    people = full_batches.people(unl)
    out = []
    for path in paths:
        base = unl["image"] if path.base is None else unl[f"image_{path.base}"]
        xs = [base for _ in cut_teachers]
        for op in path.ops:
            holes = _holes_for(op, path, dual, multi, m, f)
            xs = [apply_op(op, rng, x, t, holes, views, people) for x, t in zip(xs, cut_teachers)]
        out.append(xs)
    theta = None
    if m.unsup_transform:
        theta = augment.batch_affine_theta(rng, tf.shape(unl["image"])[0], views.scale_factor,
                                           views.rot_factor, m.unsup_rot_prob)
        out = [[_warp(views, v, theta) for v in xs] for xs in out]
    return out, theta


def _warp(views: ViewSettings, x, theta):
    return x if theta is None else augment.affine_grid_warp(x, theta, views.method.align_corners)


@dataclasses.dataclass
class PairViews:
    """The inputs of a study pair (``method.consistency_pair`` same/reversed), per network n: the
    student's view, the view its teacher (its partner's network) sees, and ``theta``, the warp that
    takes a teacher map into the student's frame (None: the same frame)."""

    student: list
    teacher: list
    theta: tf.Tensor | None
    align_corners: bool = False

    def target(self, teacher_map):
        """A teacher map on ``teacher[n]``, moved into the student's frame."""
        if self.theta is None:
            return teacher_map
        return augment.affine_grid_warp(teacher_map, self.theta, self.align_corners)


def build_pair_views(views: ViewSettings, rng, unl: dict, cut_teachers) -> PairViews:
    """The consistency pairs of the collapse study (docs/collapse_study.md), on the single path of
    ``method.paths`` (or the PoseDual-era hard view); ``cut_teachers`` as in :func:`build_views`
    (entries may be None when the path places no box).

    * ``same``: the student's view is the hard view as :func:`build_views` draws it; the teacher's is a
      second, independent draw of the same path and affine (the same difficulty). The target is the
      teacher's map warped by ``inverse(theta_teacher) @ theta_student``.
    * ``reversed``: the teacher sees the hard view and the student the easy one; the target is the
      teacher's map warped back by ``inverse(theta)``, so parts of the easy view the hard view does not
      show are taught as background (zero padding).

    Example:
        >>> import tensorflow as tf
        >>> from posedual_tf.data import augment
        >>> from posedual_tf.data.view_paths import build_pair_views, ViewSettings
        >>> from posedual_tf import config
        >>> cfg = config.load("demo_cons", ["method.consistency_pair=same", "method.paths=[CO]"])
        >>> unl = {"image": tf.ones([2, 96, 64, 3])}
        >>> pair = build_pair_views(ViewSettings.from_config(cfg), augment.StatelessRng([0, 1]), unl, [None])
        >>> teacher_maps = tf.ones([2, 24, 16, 24])                  # the net on pair.teacher[0]
        >>> tuple(pair.target(teacher_maps).shape)                   # what it learns on pair.student[0]
        (2, 24, 16, 24)
    """
    m = views.method
    paths = method_paths(m)
    if m.consistency_pair not in ("same", "reversed") or len(paths) != 1:
        raise ValueError(f"method.consistency_pair={m.consistency_pair!r} with {len(paths)} paths: pair views "
                         "are built for 'same' or 'reversed' on one path")
    with tf.name_scope("pair_views"):
        first, theta = _hard_views(views, rng, unl, paths, cut_teachers)
        if m.consistency_pair == "reversed":
            inverse = None if theta is None else augment.invert_theta(theta)
            return PairViews([unl["image"] for _ in cut_teachers], first[0], inverse, m.align_corners)
        second, theta_t = _hard_views(views, rng, unl, paths, cut_teachers)
        rel = None if theta is None else augment.compose_theta(augment.invert_theta(theta_t), theta)
        return PairViews(first[0], second[0], rel, m.align_corners)
