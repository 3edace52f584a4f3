"""tf.data pipeline on the real COCO samples: crops, flips, targets, mixing, seeds, eval, corruption."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import tensorflow as tf

from posedual_tf import codec, config, geometry, joints
from posedual_tf.data import augment, pipeline, records, sources
from posedual_tf.data.settings import EvalDataSettings, TrainDataSettings
from tests.conftest import records_with_a_bad_image as _records_with_a_bad_image, union_flip_perm


def _cfg(coco_records, det_records, *extra):
    """coco1k_dual on the samples; with ``method.name=supervised`` among ``extra``, no unlabelled records (a
    supervised config refuses them: config.RELEVANCE)."""
    unlabelled = [] if "method.name=supervised" in extra else [f"data.unlabelled.records={det_records}"]
    return config.load("coco1k_dual", [f"data.labelled.records={coco_records}", *unlabelled,
                                       f"data.val.records={coco_records}", "train.batch_size=4",
                                       *extra])


def _first_person(coco_records):
    src = sources.open_source(config.DatasetConfig(records=coco_records), "val")
    return next(iter(sources.instances(src).take(1)))


def test_flip_crop_equals_crop_of_mirrored_image(shared, coco_records, det_records):
    cfg = _cfg(coco_records, det_records)
    maker = pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg))
    elem = _first_person(coco_records)
    crop, jts, vis, center, scale = maker.crop(elem, tf.constant(1.1), tf.constant(20.0), tf.constant(True))
    img = cv2.imread(str(shared / "coco/000000000785.jpg"))          # BGR, as the reference reads it
    mirrored = img[:, ::-1]
    m = geometry.get_affine_transform(center.numpy(), scale.numpy(), 20.0, (192, 256))
    want = cv2.warpAffine(np.ascontiguousarray(mirrored), m, (192, 256), flags=cv2.INTER_LINEAR).astype(np.float32)
    err = np.abs(crop.numpy() - want)     # cv2's 1/32 px fixed-point bilinear: a few levels on edges
    assert err.max() <= 6.0 and err.mean() < 0.35, (err.max(), err.mean())
    # the left shoulder of the mirrored image is the person's right shoulder, moved by the same matrix
    lsho = elem["joints"].numpy()[14]
    expected = geometry.affine_transform_points([[img.shape[1] - 1 - lsho[0], lsho[1]]], m)[0]
    np.testing.assert_allclose(jts.numpy()[17], expected, atol=1e-3)
    assert vis.numpy()[17] == elem["vis"].numpy()[14]


def test_labelled_targets_peak_at_crop_joints(coco_records, det_records):
    """Each supervised joint's target peaks (value 1) at the joint moved into the crop as the reference
    moves it: cv2's affine of the box, after the mirror when flipped (left and right joints swapped, by
    name), over stride 4 with int(x + 0.5); a centre off the map leaves a partial gaussian (or no target).
    Scale and rotation are not drawn here (tests/test_draws.py checks their draws); whether a crop was
    flipped is read off its pixels (it equals cv2's crop of the mirrored image or of the image)."""
    cfg = _cfg(coco_records, det_records, "data.scale_factor=0", "data.rot_factor=0")
    maker = pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg))
    parse = pipeline.labelled_parser(maker)
    src = sources.open_source(cfg.data.labelled, "labelled")
    flips = set()
    perm = union_flip_perm()
    checked = 0
    for elem, seed in zip(sources.instances(src).take(6), [1, 2, 3, 4, 5, 6]):
        out = parse(elem, tf.constant(seed, tf.int64))
        t, w = (v.numpy() for v in maker.targets(out["joints"], out["vis"]))    # what the step encodes
        assert out["image"].shape == (256, 192, 3) and out["image"].dtype == tf.uint8 and t.shape == (64, 48, 24)
        assert w[[0, 7, 8, 9, 10, 12, 13]].sum() == 0          # never supervised union ids
        img = cv2.imdecode(np.frombuffer(elem["encoded"].numpy(), np.uint8), cv2.IMREAD_COLOR)
        width = img.shape[1]
        c, s = geometry.box_to_center_scale(elem["box"].numpy(), 192 / 256)
        crop = out["image"].numpy().astype(np.float32)
        errors = []
        for mirrored in (False, True):
            cm = np.array([width - 1 - c[0], c[1]]) if mirrored else c
            src_img = np.ascontiguousarray(img[:, ::-1]) if mirrored else img
            want = cv2.warpAffine(src_img, geometry.get_affine_transform(cm, s, 0.0, (192, 256)), (192, 256),
                                  flags=cv2.INTER_LINEAR)
            errors.append(np.abs(crop - want).mean())
        flip = errors[1] < errors[0]
        assert min(errors) < 0.5 < max(errors), errors
        flips.add(bool(flip))
        jts, vis = elem["joints"].numpy().copy(), elem["vis"].numpy().copy()
        if flip:
            jts[:, 0] = width - 1 - jts[:, 0]
            jts, vis = jts[perm], vis[perm]
            c = np.array([width - 1 - c[0], c[1]])
        m = geometry.get_affine_transform(c, s, 0.0, (192, 256))
        moved = geometry.affine_transform_points(jts, m)
        for j in np.where(vis > 0)[0]:
            mx, my = int(moved[j, 0] / 4 + 0.5), int(moved[j, 1] / 4 + 0.5)
            if 0 <= mx < 48 and 0 <= my < 64:
                assert w[j] == 1 and t[my, mx, j] == pytest.approx(1.0), (seed, j)
                assert np.unravel_index(np.argmax(t[..., j]), t.shape[:2]) == (my, mx)
                checked += 1
            elif w[j] > 0:
                assert t[..., j].max() < 1.0
    assert checked >= 20 and flips == {False, True}


def test_same_seed_same_batches(coco_records, det_records):
    cfg = _cfg(coco_records, det_records, "method.rand_aug=true", "method.rand_magnitude=20")

    def first(seed):
        ds = pipeline.train_dataset(TrainDataSettings.from_config(cfg), seed=seed)
        return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(2)]

    a, b, c = first(5), first(5), first(6)
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(c)))
    lab, unl = a[0]
    np.testing.assert_array_equal(unl["weight"][0], joints.COCO.union_mask())
    assert set(unl) == {"image", "image_RA", "weight", "person"}
    assert not np.array_equal(unl["image"], unl["image_RA"])


def test_steps_per_epoch_is_the_unlabelled_set(coco_records, det_records):
    cfg = _cfg(coco_records, det_records, "train.batch_size=32")
    steps, _ = pipeline.epoch_steps(TrainDataSettings.from_config(cfg))
    assert steps == int(np.ceil(118 / 32))
    sup = config.load("coco1k_sup", [f"data.labelled.records={coco_records}", "data.labelled.max_instances=5",
                                     "train.batch_size=2", "train.steps_per_epoch=0"])
    ds, (steps, _) = pipeline.train_dataset(TrainDataSettings.from_config(sup)), pipeline.epoch_steps(TrainDataSettings.from_config(sup))
    assert steps == 3
    sizes = [int(b["image"].shape[0]) for b in ds.take(6)]
    assert sizes == [2, 2, 1, 2, 2, 1]          # the epoch is the labelled set, its last batch partial


def test_eval_crops_carry_the_area_of_their_non_square_box(coco_records, det_records):
    """An evaluation person's area (OKS-NMS and rescoring read it) is the width times the height of its box
    widened or heightened to the crop's 3:4 and enlarged 1.25 times on each side, written here."""
    cfg = _cfg(coco_records, det_records)
    parse = pipeline.eval_parser(pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg)))
    src = sources.open_source(cfg.data.val, "val")
    seen = 0
    for elem in sources.instances(src).take(6):
        x, y, w, h = (float(v) for v in elem["box"].numpy())
        if w > 0.75 * h:
            h = w / 0.75
        elif w < 0.75 * h:
            w = h * 0.75
        got = float(parse(elem)["area"].numpy())
        assert got == pytest.approx(w * 1.25 * h * 1.25, rel=1e-5), (got, w, h)
        seen += abs(w - h) > 1
    assert seen >= 3                          # non-square boxes


def test_eval_dataset_detected_boxes_threshold(coco_records, det_records):
    cfg = _cfg(coco_records, det_records, f"data.val.records={det_records}", "test.use_gt_bbox=false",
               "test.image_thre=0.5")
    ds, src = pipeline.eval_dataset(EvalDataSettings.from_config(cfg), batch_size=64)
    n = sum(int(b["image"].shape[0]) for b in ds)
    scores = [s for r in records.read_all(det_records) for s in r["scores"]]
    assert n == sum(s >= 0.5 for s in scores) > 0


@pytest.mark.parametrize("bad_index", [0, 3])      # the first image, and the last (no survivor after it)
def test_corrupt_image_in_a_record_is_dropped_and_counted(shared, coco_records, det_records, tmp_path, bad_index):
    from posedual_tf.data import corrupt

    prefix, lost = _records_with_a_bad_image(shared, tmp_path, bad_index)
    cfg = _cfg(coco_records, det_records, f"data.val.records={prefix}")
    counter = corrupt.CorruptionCounter()
    ds, src = pipeline.eval_dataset(EvalDataSettings.from_config(cfg), batch_size=64, counter=counter)
    n = sum(int(b["image"].shape[0]) for b in ds)
    assert n == src.num_instances - lost
    assert counter.total() == lost and counter.by_stream == {"val": lost}
    assert counter.worst_shard() == records.shard_paths(prefix, 1)[0]


def test_missing_records_error_names_the_command(tmp_path):
    cfg = config.load("coco1k_dual", [f"data.labelled.records={tmp_path}/nothing"])
    with pytest.raises(sources.MissingRecordsError, match=r"python -m tfrecords_tools\.coco .*--output .*nothing"):
        pipeline.train_dataset(TrainDataSettings.from_config(cfg))


def test_rand_augment_ops_stay_in_range_and_invert_is_exact():
    img = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 24, 3)), tf.float32)
    for seed in range(12):
        out = augment.rand_augment(img, augment.StatelessRng([seed, 0]), 2, 20).numpy()
        assert out.shape == (32, 24, 3) and out.min() >= 0 and out.max() <= 255
        np.testing.assert_array_equal(out, np.round(out))
        assert not np.array_equal(out, img.numpy())                 # every draw of 2 ops at M=20 changes it
    np.testing.assert_array_equal(augment._solarize(img, 128.0).numpy(),
                                  np.where(img.numpy() >= 128, 255 - img.numpy(), img.numpy()))
    np.testing.assert_array_equal(augment._posterize(img, 4).numpy(), (img.numpy().astype(int) >> 4 << 4))


def _people_of(batches, key="person"):
    return [int(p) for b in batches for p in b[key].numpy()]


def test_epochs_are_fresh_uniform_permutations_of_the_people(coco_records, det_records):
    cfg = _cfg(coco_records, det_records)
    unl = sources.open_source(cfg.data.unlabelled, "unlabelled")
    orders = [pipeline.epoch_order(unl.num_instances, unl.num_instances, 3, e, "permutation").numpy() for e in (0, 1)]
    for o in orders:
        assert sorted(o) == list(range(unl.num_instances))           # every person once per epoch
    assert not np.array_equal(orders[0], orders[1])                 # a new order every epoch
    assert not np.array_equal(orders[0], np.arange(unl.num_instances))
    # the fetched person is the one asked for: its record and slot in file order
    fetch = sources.person_fetcher(unl)
    file_order = list(sources.instances(unl))
    for i in orders[0][:5]:
        got = fetch(tf.constant(i))
        np.testing.assert_array_equal(got["box"], file_order[i]["box"])
        assert int(got["image_id"]) == int(file_order[i]["image_id"]) and int(got["person"]) == i
    draws = pipeline.epoch_order(5, 4000, 3, 0, "replacement").numpy()
    assert draws.min() == 0 and draws.max() == 4 and abs(np.bincount(draws).std() / 800) < 0.1


def test_labelled_stream_draws_with_replacement_and_supervised_permutes(coco_records, det_records):
    cfg = _cfg(coco_records, det_records)
    assert TrainDataSettings.from_config(cfg).labelled_sampling == "replacement"
    sup = config.load("coco1k_sup", [f"data.labelled.records={coco_records}", "data.labelled_sampling=auto"])
    assert TrainDataSettings.from_config(sup).labelled_sampling == "permutation"
    assert TrainDataSettings.from_config(config.load("coco1k_sup")).labelled_sampling == "replacement"


def test_subset_is_the_same_people_whatever_the_number_of_workers(coco_records, det_records):
    """max_instances selects the first N people in file order before the streams are split; the
    input pipelines of a multi-worker run take disjoint positions of one epoch order that together
    cover every selected person."""
    cfg = _cfg(coco_records, det_records, "data.labelled.max_instances=7", "method.name=supervised",
               "data.labelled_sampling=permutation", "train.batch_size=2")
    lab = sources.open_source(cfg.data.labelled, "labelled")
    first7 = list(range(7))
    assert [int(e["person"]) for e in sources.instances(lab)] == first7
    seen = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        fetch = sources.person_fetcher(lab)
        order = pipeline.epoch_order(lab.num_instances, 8, cfg.train.seed, 0, "permutation")[worker::2]
        seen.append([int(fetch(i)["person"]) for i in order])
        ds, (steps, _) = pipeline.train_dataset(TrainDataSettings.from_config(cfg), input_context=ctx), pipeline.epoch_steps(TrainDataSettings.from_config(cfg))
        assert steps == 4 and all(int(b["image"].shape[0]) == 1 for b in ds.take(8))   # per-replica, full
    assert len(seen[0]) == len(seen[1]) == 4
    assert set(seen[0]) | set(seen[1]) == set(first7)


def test_crops_are_integer_valued_as_the_reference_uint8_warp(coco_records, det_records):
    cfg = _cfg(coco_records, det_records, "method.rand_aug=true", "method.rand_magnitude=20")
    maker = pipeline.SampleMaker(cfg.data, codec.HeatmapCodec.from_config(cfg))
    crop, *_ = maker.crop(_first_person(coco_records), tf.constant(1.1), tf.constant(13.0), tf.constant(False))
    c = crop.numpy()
    np.testing.assert_array_equal(c, np.round(c))
    assert c.min() >= 0 and c.max() <= 255
    # so Posterize keeps exactly the top bits of the crop's own uint8 values
    np.testing.assert_array_equal(augment._posterize(crop, 4).numpy(), c.astype(int) >> 4 << 4)


@pytest.mark.parametrize("mixed", [False, True])
def test_a_stream_started_at_step_k_is_the_full_stream_from_k_on(coco_records, det_records, mixed):
    extra = [] if mixed else ["method.name=supervised", "data.labelled_sampling=permutation"]
    cfg = _cfg(coco_records, det_records, "train.batch_size=5", "data.labelled.max_instances=0", *extra)
    full, (steps, _) = pipeline.train_dataset(TrainDataSettings.from_config(cfg)), pipeline.epoch_steps(TrainDataSettings.from_config(cfg))
    full = [tf.nest.map_structure(lambda t: t.numpy(), b) for b in full.take(steps + 3)]
    k = steps + 1                                         # mid-way into the second epoch
    resumed = pipeline.train_dataset(TrainDataSettings.from_config(cfg), start_step=k)
    for want, got in zip(full[k:], resumed.take(len(full) - k)):
        for x, y in zip(tf.nest.flatten(want), tf.nest.flatten(tf.nest.map_structure(lambda t: t.numpy(), got))):
            np.testing.assert_array_equal(x, y)
    if not mixed:
        assert [len(b["person"]) for b in full[:steps]] == [5, 5, 2]      # the reference's partial last batch


def test_the_step_prepares_bit_for_bit_what_the_pipeline_used_to_ship(coco_records, det_records, monkeypatch):
    """#28: the pipeline ships uint8 crops (easy view and RandAugment copies) and crop-space joints;
    ``codec.TrainingInputs`` in the (compiled) step makes of them exactly what the pipeline used to ship:
    the float crops normalised and each person's targets encoded one by one."""
    cfg = _cfg(coco_records, det_records, "method.rand_aug=true", "method.rand_magnitude=20")
    prepare = codec.TrainingInputs.from_config(cfg)
    lab, unl = next(iter(pipeline.train_dataset(TrainDataSettings.from_config(cfg))))
    assert lab["image"].dtype == unl["image"].dtype == unl["image_RA"].dtype == tf.uint8
    assert "target" not in lab and set(lab) == {"image", "joints", "vis", "person"}
    in_step = tf.function(lambda lab, unl: (prepare(lab), prepare(unl)))
    got_lab, got_unl = in_step(lab, unl)
    monkeypatch.setattr(pipeline, "pixels", lambda crop: crop)      # the float crops, as shipped before
    float_lab, float_unl = next(iter(pipeline.train_dataset(TrainDataSettings.from_config(cfg))))
    norm, heatmaps = codec.InputNormaliser.from_config(cfg.data), codec.HeatmapCodec.from_config(cfg)
    np.testing.assert_array_equal(got_lab["image"], norm.normalise(float_lab["image"]))
    for key in ("image", "image_RA"):
        assert float_unl[key].dtype == tf.float32
        np.testing.assert_array_equal(got_unl[key], norm.normalise(float_unl[key]))
    for i in range(lab["image"].shape[0]):
        target, weight = heatmaps.encode(float_lab["joints"][i], float_lab["vis"][i])
        np.testing.assert_array_equal(got_lab["target"][i], target)
        np.testing.assert_array_equal(got_lab["weight"][i], weight)
    assert float(tf.reduce_max(got_lab["target"])) == 1.0
