"""Joint sets, their mappings into the 24-joint union space, flip pairs and OKS sigmas.

Every network outputs the 24 *union* joints (the reference's ``JointsDataset.get_mapping`` and each dataset's ``u2a_mapping``). A dataset joint
set maps into the union by name; rows of the union that a dataset does not cover stay
zero with visibility zero.

Example:
    >>> from posedual_tf import joints
    >>> coco = joints.get("coco")
    >>> coco.to_union[0]        # COCO nose -> union index 11
    11
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

UNION_NAMES: tuple[str, ...] = (
    "root", "rhip", "rkne", "rank", "lhip", "lkne", "lank", "belly", "thorax", "neck",
    "upper_neck", "nose", "head", "head_top", "lsho", "lelb", "lwri", "rsho", "relb",
    "rwri", "reye", "leye", "rear", "lear",
)
NUM_UNION = len(UNION_NAMES)

#: Union flip pairs, used for training flips and flip test on every dataset.
UNION_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 4), (2, 5), (3, 6), (14, 17), (15, 18), (16, 19), (20, 21), (22, 23))
#: Half-body split of the union (upper body, lower body).
UNION_UPPER: tuple[int, ...] = tuple(range(7, 24))
UNION_LOWER: tuple[int, ...] = tuple(range(0, 7))


@dataclasses.dataclass(frozen=True)
class JointSet:
    """A dataset's joints: names in dataset order and their union indices."""

    name: str
    names: tuple[str, ...]
    #: ``to_union[k]`` is the union index of dataset joint ``k`` (reference ``a2u``).
    to_union: tuple[int, ...]
    #: Pairs of dataset indices that swap under a horizontal flip.
    flip_pairs: tuple[tuple[int, int], ...]
    #: Skeleton edges (dataset indices) for drawing.
    skeleton: tuple[tuple[int, int], ...]
    #: Per-joint OKS sigma (COCO) or delta (AIC), dataset order; None when undefined.
    sigmas: tuple[float, ...] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def from_union(self) -> tuple[int, ...]:
        """``from_union[u]`` is the dataset index of union joint ``u`` or -1 (reference ``u2a``)."""
        out = [-1] * NUM_UNION
        for k, u in enumerate(self.to_union):
            out[u] = k
        return tuple(out)

    def union_mask(self) -> np.ndarray:
        """Float32 ``[24]`` mask, 1 on the union ids this set covers."""
        mask = np.zeros([NUM_UNION], np.float32)
        mask[list(self.to_union)] = 1.0
        return mask

    def to_union_array(self, joints: np.ndarray) -> np.ndarray:
        """Map ``[..., K, C]`` dataset rows to ``[..., 24, C]`` union rows (zeros elsewhere)."""
        joints = np.asarray(joints)
        if joints.shape[-2] != self.num_joints:
            raise ValueError(f"{self.name}: expected {self.num_joints} joints, got {joints.shape[-2]}")
        out = np.zeros(joints.shape[:-2] + (NUM_UNION, joints.shape[-1]), joints.dtype)
        out[..., list(self.to_union), :] = joints
        return out

    def from_union_array(self, union: np.ndarray) -> np.ndarray:
        """Map ``[..., 24, C]`` union rows back to ``[..., K, C]`` (reference ``pred[:, a2u]``)."""
        return np.asarray(union)[..., list(self.to_union), :]


def _index(names: Sequence[str]) -> tuple[int, ...]:
    return tuple(UNION_NAMES.index(n) for n in names)


def _pairs_from_union(to_union: Sequence[int]) -> tuple[tuple[int, int], ...]:
    inverse = {u: k for k, u in enumerate(to_union)}
    return tuple((inverse[a], inverse[b]) for a, b in UNION_FLIP_PAIRS
                 if a in inverse and b in inverse)


_COCO_NAMES = ("nose", "leye", "reye", "lear", "rear", "lsho", "rsho", "lelb", "relb", "lwri",
               "rwri", "lhip", "rhip", "lkne", "rkne", "lank", "rank")
_COCO_LONG_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
_MPII_NAMES = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "root", "thorax", "upper_neck",
               "head_top", "rwri", "relb", "rsho", "lsho", "lelb", "lwri")
_AIC_NAMES = ("rsho", "relb", "rwri", "lsho", "lelb", "lwri", "rhip", "rkne", "rank", "lhip",
              "lkne", "lank", "head_top", "neck")

COCO_SIGMAS = tuple(s / 10.0 for s in (
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89))
AIC_DELTAS = tuple(2.0 * d for d in (
    0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
    0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173))


#: OKS sigmas of union joints COCO does not annotate, as CrowdPose's evaluation (crowdposetools) sets
#: them: 0.79 / 10 for its head (top) and neck. Other union joints have none: a custom set holding one
#: needs ``test.oks_sigmas``.
EXTRA_SIGMAS = {"head_top": 0.079, "head": 0.079, "neck": 0.079}


def _make(name, names, skeleton, sigmas=None) -> JointSet:
    to_union = _index(names)
    return JointSet(name, tuple(names), to_union, _pairs_from_union(to_union),
                    tuple(skeleton), sigmas)


COCO = _make("coco", _COCO_NAMES, (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)), COCO_SIGMAS)
MPII = _make("mpii", _MPII_NAMES, (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11), (11, 12),
    (12, 7), (7, 13), (13, 14), (14, 15)))
AIC = _make("aic", _AIC_NAMES, (
    (0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13), (13, 0),
    (13, 3), (0, 6), (3, 9)), AIC_DELTAS)
UNION = JointSet("union", UNION_NAMES, tuple(range(NUM_UNION)), UNION_FLIP_PAIRS, (
    (3, 2), (2, 1), (1, 0), (0, 4), (4, 5), (5, 6), (0, 8), (8, 9), (9, 10), (10, 13),
    (8, 14), (14, 15), (15, 16), (8, 17), (17, 18), (18, 19), (11, 20), (11, 21), (20, 22),
    (21, 23)))

JOINT_SETS: dict[str, JointSet] = {j.name: j for j in (COCO, MPII, AIC, UNION)}


def get(name: str) -> JointSet:
    """Return the joint set called ``name`` (coco, mpii, aic, union)."""
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown joint set {name!r}; expected one of {sorted(JOINT_SETS)}") from None


def union_flip_permutation() -> np.ndarray:
    """``perm[u]`` = the union channel that lands on ``u`` after a horizontal flip."""
    perm = np.arange(NUM_UNION)
    for a, b in UNION_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


#: COCO's long keypoint names (``left_shoulder``) -> union names; any subset of them maps one by one.
LONG_NAMES: dict[str, str] = dict(zip(_COCO_LONG_NAMES, _COCO_NAMES))


def parse_keypoint_map(text: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}`` (dataset name -> union name); errors say what is expected."""
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or target.strip() not in UNION_NAMES:
            raise ValueError(f"--keypoint-map {item!r}: expected name=union_name with union_name one of "
                             f"{list(UNION_NAMES)}")
        out[name.strip()] = target.strip()
    return out


def coco_set_for_keypoint_names(names: Sequence[str], mapping: dict[str, str] | None = None) -> JointSet:
    """Joint set of a COCO-format category given its ``keypoints`` names.

    The 17 standard COCO names map to :data:`COCO`. Any other list is a custom joint set whose
    joints map into the union one by one: through ``mapping`` (``--keypoint-map``) first, then
    COCO's long names (``left_shoulder`` -> ``lsho``), then union names as they are. Names that
    cannot be placed, or two joints landing on one union joint, are a ValueError saying so.
    """
    names = tuple(names)
    mapping = dict(mapping or {})
    unused = sorted(set(mapping) - set(names))
    if unused:
        raise ValueError(f"--keypoint-map names {unused} are not among the category's keypoints {list(names)}")
    union_names = tuple(mapping.get(n, LONG_NAMES.get(n, n)) for n in names)
    if union_names == _COCO_NAMES:
        return COCO
    unknown = [n for n, u in zip(names, union_names) if u not in UNION_NAMES]
    if unknown:
        raise ValueError(f"category keypoints {unknown} are not COCO or union joint names; map them with "
                         f"--keypoint-map {unknown[0]}=<union name> (union names: {list(UNION_NAMES)})")
    dupes = sorted({u for u in union_names if union_names.count(u) > 1})
    if dupes:
        raise ValueError(f"category keypoints map several joints onto union joint(s) {dupes}; "
                         "give each its own with --keypoint-map")
    known = {**dict(zip(_COCO_NAMES, COCO_SIGMAS)), **EXTRA_SIGMAS}
    sigmas = tuple(known[u] for u in union_names) if all(u in known for u in union_names) else None
    jset = _make("custom", union_names, (), sigmas)
    return dataclasses.replace(jset, names=names)


def from_manifest(manifest: dict) -> JointSet:
    """The joint set a converted dataset was written with (``PREFIX.json``)."""
    name = manifest["joint_set"]
    if name in JOINT_SETS:
        return JOINT_SETS[name]
    return coco_set_for_keypoint_names(manifest["joint_names"], manifest.get("keypoint_map"))
