"""COCO evaluation, OKS-NMS, MPII PCKh and AIC mAP on real annotations and hand-built cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from posedual_tf import codec, joints
from posedual_tf.evaluation import aic, coco, mpii
from posedual_tf.data.settings import EvalDataSettings


def _gt_instances(shared, jitter=0.0, seed=0):
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    rng = np.random.default_rng(seed)
    out = []
    for a in ann["annotations"]:
        if a["iscrowd"] or max(a["keypoints"]) == 0:
            continue
        kp = np.array(a["keypoints"], np.float64).reshape(17, 3)
        kp[:, :2] += rng.normal(0, jitter, (17, 2)) if jitter else 0
        kp[:, 2] = rng.uniform(0.3, 1.0, 17) if jitter else 1.0
        x, y, w, h = a["bbox"]
        out.append({"keypoints": kp, "image_id": a["image_id"], "box_score": 1.0, "area": w * h * 1.5,
                    "bbox": a["bbox"]})
    return out


def test_ground_truth_as_predictions_gives_ap_1(shared):
    kept = coco.rescore_and_nms(_gt_instances(shared), 0.2, 0.9)
    stats = coco.evaluate_coco(coco.to_results(kept), str(shared / "coco/test_coco.json"))
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def _summarize_lines(results_path, ann_path) -> dict[str, float]:
    """pycocotools' own printed summary, each line named from its text: (AP|AR) [.5|.75] [(M)|(L)]."""
    import contextlib
    import io
    import re

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        gt = COCO(ann_path)
        ev = COCOeval(gt, gt.loadRes(results_path), "keypoints")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    out = {}
    pattern = r"Average (Precision|Recall) +\((AP|AR)\) @\[ IoU=([0-9.:]+) +\| area= *(\w+) \| maxDets= *\d+ \] = ([-0-9.]+)"
    for kind, short, iou, area, value in re.findall(pattern, text.getvalue()):
        name = short + {"0.50:0.95": "", "0.50": " .5", "0.75": " .75"}[iou] + \
            {"all": "", "medium": " (M)", "large": " (L)"}[area]
        out[name] = float(value)
    return out


def test_stat_names_match_pycocotools_printed_summary(shared, tmp_path):
    """Each of our ten names carries the number pycocotools prints on the line that names it."""
    inst = _gt_instances(shared, jitter=4.0, seed=3)
    path = tmp_path / "res.json"
    coco.write_results(coco.to_results(coco.rescore_and_nms(inst, 0.2, 0.9)), str(path))
    ann = str(shared / "coco/test_coco.json")
    printed = _summarize_lines(str(path), ann)
    assert len(printed) == 10
    stats = coco.evaluate_coco(str(path), ann)
    assert set(stats) == set(printed)
    for name, value in printed.items():
        assert stats[name] == pytest.approx(value, abs=5e-4), name
    # the case tells the labels apart: the IoU columns differ
    assert abs(printed["AP .5"] - printed["AP .75"]) > 0.01 and abs(printed["AR .5"] - printed["AR .75"]) > 0.01


def test_jittered_predictions_match_direct_pycocotools(shared, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    inst = _gt_instances(shared, jitter=6.0, seed=1)
    results = coco.to_results(coco.rescore_and_nms(inst, 0.2, 0.9))
    path = tmp_path / "res.json"
    coco.write_results(results, str(path))
    stats = coco.evaluate_coco(str(path), str(shared / "coco/test_coco.json"))
    gt = COCO(str(shared / "coco/test_coco.json"))
    ev = COCOeval(gt, gt.loadRes(str(path)), "keypoints")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    np.testing.assert_allclose([stats[k] for k in coco.STAT_NAMES], ev.stats)
    assert 0.05 < stats["AP"] < 0.999


def test_oks_nms_hand_built():
    sig = np.array(joints.COCO_SIGMAS)
    base = np.zeros((17, 3))
    base[:, 0] = np.arange(17) * 10.0
    base[:, 2] = 1.0
    area = 30.0 * 30.0
    # a copy shifted by d px on every joint has OKS = exp(-d^2 / ((2 sigma)^2 * area * 2)) averaged
    def shifted(d):
        k = base.copy()
        k[:, 0] += d
        return k

    def oks(d):
        return np.mean(np.exp(-d ** 2 / (2 * sig) ** 2 / (area + np.spacing(1)) / 2))

    np.testing.assert_allclose(coco.oks_iou(base, shifted(3.0)[None], area, np.array([area])), [oks(3.0)])
    kps = np.stack([base, shifted(1.0), shifted(3.0), shifted(40.0)])
    assert oks(1.0) > 0.9 > oks(3.0) > 0.5 > oks(40.0)
    keep = coco.oks_nms(kps, np.array([0.9, 0.8, 0.7, 0.6]), np.full(4, area), 0.9)
    assert keep == [0, 2, 3]                      # the 1 px copy (OKS > 0.9) is dropped
    keep = coco.oks_nms(kps, np.array([0.9, 0.8, 0.7, 0.6]), np.full(4, area), 0.5)
    assert keep == [0, 3]
    keep = coco.oks_nms(kps, np.array([0.5, 0.8, 0.7, 0.6]), np.full(4, area), 0.9)
    assert keep[0] == 1 and 0 not in keep
    soft = coco.soft_oks_nms(kps, np.array([0.9, 0.8, 0.7, 0.6]), np.full(4, area), 0.5)
    assert soft[0] == 0 and soft[-1] == 1         # the near-duplicate is decayed the most


def test_oks_nms_with_unequal_areas_uses_the_mean_area_of_the_pair():
    """The reference's NMS OKS divides by the mean of the two instances' areas. A small instance shifted
    from a large kept one: by the pair's mean area it is below the threshold (kept); by the kept one's
    area alone it would be above (dropped)."""
    sig = np.array(joints.COCO_SIGMAS)
    base = np.zeros((17, 3))
    base[:, 0], base[:, 1], base[:, 2] = np.arange(17) * 10.0, 50.0, 1.0
    moved = base.copy()
    moved[:, 0] += 4.0
    big, small = 3600.0, 400.0
    by_hand = lambda area: float(np.mean(np.exp(-16.0 / (2 * sig) ** 2 / (area + np.spacing(1)) / 2)))
    mean_area, kept_area = by_hand((big + small) / 2), by_hand(big)
    thresh = 0.5 * (mean_area + kept_area)
    assert mean_area < thresh < kept_area
    np.testing.assert_allclose(coco.oks_iou(base, moved[None], big, np.array([small])), [mean_area], rtol=1e-12)
    keep = coco.oks_nms(np.stack([base, moved]), np.array([0.9, 0.8]), np.array([big, small]), thresh)
    assert keep == [0, 1]
    keep = coco.oks_nms(np.stack([base, moved]), np.array([0.9, 0.8]), np.array([big, big]), thresh)
    assert keep == [0]


def test_rescoring_is_box_score_times_mean_confident_joint_score():
    """Independent of the code: score = box score x mean of the joint scores above in_vis_thre (0 when
    none), per instance; nms 'none' keeps all."""
    rng = np.random.default_rng(7)
    inst, want = [], []
    for i in range(12):
        kp = np.zeros((17, 3))
        kp[:, 2] = rng.uniform(0, 0.6, 17)
        box = float(rng.uniform(0.1, 1.0))
        inst.append({"keypoints": kp, "image_id": i // 3, "box_score": box, "area": 100.0})
        conf = [v for v in kp[:, 2] if v > 0.2]
        want.append(box * (sum(conf) / len(conf) if conf else 0.0))
    got = coco.rescore_and_nms(inst, 0.2, 0.9, nms="none")
    assert [g["score"] for g in got] == pytest.approx(want, rel=1e-12)


def test_evaluation_carries_each_records_detection_score_into_rescoring():
    """runner.predict keeps each person's box (detection) score; the kept instance's score is that score
    times the mean confident joint score of the decoded heatmaps."""
    import tensorflow as tf

    from posedual_tf import config
    from posedual_tf.evaluation import runner

    hm = np.zeros((2, 16, 12, 24), np.float32)
    hm[0, 5, 5, :], hm[1, 7, 3, :] = 0.8, 0.6                      # every joint's peak: 0.8 and 0.6
    batch = {"image": np.zeros((2, 8, 8, 3), np.float32), "center": np.float32([[100, 100], [300, 100]]),
             "scale": np.float32([[1, 1], [1, 1]]), "score": np.float32([0.37, 0.9]),
             "image_id": np.int64([1, 1]), "ann_id": np.int64([0, 1]), "area": np.float32([1e4, 1e4]),
             "raw_box": np.float32([[0, 0, 1, 1]] * 2)}
    cfg = config.load("coco1k_sup", ["data.image_size=[48,64]", "data.heatmap_size=[12,16]"])
    out = runner.predict(codec.HeatmapCodec.from_config(cfg), [lambda x, training=False: tf.constant(hm)], tf.data.Dataset.from_tensors(batch),
                         progress=False)["net1"]
    assert [o["box_score"] for o in out] == pytest.approx([0.37, 0.9])
    mapped = [dict(o, keypoints=joints.COCO.from_union_array(o["keypoints"])) for o in out]
    kept = coco.rescore_and_nms(mapped, 0.2, 0.9, nms="none")
    assert [k["score"] for k in kept] == pytest.approx([0.37 * 0.8, 0.9 * 0.6], rel=1e-6)


def test_rescoring_uses_visibility_threshold():
    kp = np.zeros((17, 3))
    kp[:5, 2] = 0.8
    kp[5:, 2] = 0.1
    out = coco.rescore_and_nms([{"keypoints": kp, "image_id": 1, "box_score": 0.5, "area": 1.0}], 0.2, 0.9)
    assert out[0]["score"] == pytest.approx(0.8 * 0.5)
    kp[:, 2] = 0.1
    assert coco.rescore_and_nms([{"keypoints": kp, "image_id": 1, "area": 1.0}], 0.2, 0.9)[0]["score"] == 0.0


def test_pckh_hand_built():
    n = 4
    gt = np.zeros((n, 16, 2))
    gt[..., 0] = np.arange(16) * 10
    head = np.zeros((n, 2, 2))
    head[:, 1] = [30.0, 40.0]                      # head size 50 -> normaliser 0.6 * 50 = 30
    missing = np.zeros((n, 16), bool)
    missing[0, 3] = True
    pred = gt.copy()
    pred[:, :, 0] += np.array([10.0, 14.0, 16.0, 40.0])[:, None]     # errors 1/3, 0.467, 0.533, 1.33 of 30
    out = mpii.pckh(pred, gt, missing, head)
    np.testing.assert_allclose(out["per_joint"][0], 50.0)            # 2 of 4 within 0.5
    np.testing.assert_allclose(out["per_joint"][3], 100 * 1 / 3)    # sample 0 is missing for joint 3
    assert out["Head"] == pytest.approx(50.0)
    exact = mpii.pckh(gt, gt, missing, head)
    assert exact["Mean"] == 100.0 and exact["Mean@0.1"] == 100.0
    off = gt.copy()
    off[:, [6, 7]] += 100                        # pelvis and thorax do not count in the Mean
    assert mpii.pckh(off, gt, missing, head)["Mean"] == 100.0
    near = gt.copy()
    near[..., 0] += 0.105 * 30                   # inside 0.11 (reference "@0.1"), outside 0.10
    assert mpii.pckh(near, gt, missing, head)["Mean@0.1"] == 100.0
    assert mpii.pckh(near, gt, missing, head, at_0_1=0.1)["Mean@0.1"] == 0.0


def test_aic_map_hand_built(shared):
    raw = json.loads((shared / "aic/keypoint_annotations_example_3imgs.json").read_text())
    perfect = {item["image_id"]: [np.array(v, float).reshape(14, 3)[:, :2] for v in item["keypoint_annotations"].values()]
               for item in raw}
    assert aic.aic_map(perfect, raw)["AP"] == pytest.approx(1.0)
    # one image without predictions: its people count as misses
    partial = dict(perfect)
    missing_people = len(raw[0]["keypoint_annotations"])
    partial[raw[0]["image_id"]] = []
    total = sum(len(i["keypoint_annotations"]) for i in raw)
    assert aic.aic_map(partial, raw)["AP"] == pytest.approx((total - missing_people) / total)
    # an extra false prediction in an image raises its denominator
    extra = {k: list(v) for k, v in perfect.items()}
    extra[raw[1]["image_id"]].append(np.zeros((14, 2)))
    assert aic.aic_map(extra, raw)["AP"] == pytest.approx(total / (total + 1))


def test_detected_box_evaluation_end_to_end_with_converted_model(shared, det_records, tmp_path):
    """evaluate CLI on the real images, detected boxes, a PoseDual checkpoint read from a .pth file."""
    import subprocess
    import sys

    torch = pytest.importorskip("torch")
    from tests import torch_reference as tr

    state = {}
    for prefix, seed in (("resnet.", 1), ("resnet2.", 2)):
        state.update({prefix + k: v for k, v in tr.randomise(tr.PoseResNet(18), seed).state_dict().items()})
    torch.save({"state_dict": state}, tmp_path / "dual.pth.tar")
    sets = [f"--set=data.val.records={det_records}", f"--set=data.val.annotations={shared / 'coco/test_coco.json'}",
            "--set=test.use_gt_bbox=false", "--set=test.image_thre=0.3", "--set=test.flip_test=true",
            "--set=data.image_size=[96,128]", "--set=data.heatmap_size=[24,32]"]
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "posedual_tf.evaluate", "--config", "coco1k_dual", "--checkpoint",
                           str(tmp_path / "dual.pth.tar"), "--output", str(out), *sets],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| net1 |" in proc.stdout and "| ensemble |" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for head in ("net1", "net2", "ensemble"):
        assert set(metrics[head]) == set(coco.STAT_NAMES) | {"peak_mean", "peaks_below"}
        res = json.loads((out / f"results_{head}.json").read_text())
        assert res and all(len(r["keypoints"]) == 51 for r in res)
    dets = json.loads((shared / "coco/test_coco_det_AP_H_56.json").read_text())
    assert metrics["_counts"]["instances"] == sum(1 for d in dets if d["score"] >= 0.3)
    # the two nets of the checkpoint differ, so their results do
    r1 = json.loads((out / "results_net1.json").read_text())
    r2 = json.loads((out / "results_net2.json").read_text())
    assert r1[0]["keypoints"] != r2[0]["keypoints"]


def _mpii_val(shared, tmp_path, people, tag):
    """People (simple-baseline MPII json entries) converted to records, and a gt_valid.mat in their order."""
    from scipy.io import savemat

    from posedual_tf.conversion import mpii as mpii_tool
    from posedual_tf.conversion import writer

    (tmp_path / f"{tag}_people.json").write_text(json.dumps(people))       # not {tag}.json: the manifest's name
    entries, _ = mpii_tool.build_entries(str(tmp_path / f"{tag}_people.json"), str(shared / "mpii"))
    writer.write_dataset(entries, str(tmp_path / tag), joint_set=joints.MPII, sources=[], workers=1)
    gt = np.array([p["joints"] for p in people], np.float64)                       # [N, 16, 2], 1-based
    head = gt[:, 9]
    savemat(tmp_path / f"gt_{tag}.mat", {
        "pos_gt_src": gt.transpose(1, 2, 0),
        "jnt_missing": (1 - np.array([p["joints_vis"] for p in people])).T,
        "headboxes_src": np.stack([head - 25, head + 25], 1).transpose(1, 2, 0)})
    return str(tmp_path / tag), str(tmp_path / f"gt_{tag}.mat")


def _pckh_of_targets(records, gt_mat):
    """PCKh of the decoded training targets (near-perfect predictions) through the evaluation path."""
    from posedual_tf import codec, config
    from posedual_tf.data import pipeline
    from posedual_tf.evaluation import runner

    cfg = config.load("mpii_aic_dual_res18", [f"data.val.records={records}", f"data.val.annotations={gt_mat}"])
    ds, src = pipeline.eval_dataset(EvalDataSettings.from_config(cfg), batch_size=4)
    instances = []
    for b in ds:
        coords, maxvals = codec.decode_heatmaps(b["target"], b["center"], b["scale"], None, "shift", False)
        for i in range(coords.shape[0]):
            instances.append({"keypoints": np.concatenate([coords[i], maxvals[i][:, None]], -1),
                              "ann_id": int(b["ann_id"][i]), "image_id": int(b["image_id"][i])})
    return runner.score(runner.ScoreSettings.from_config(cfg), src, instances)[0], [i["ann_id"] for i in instances]


def test_mpii_pckh_matches_people_by_their_json_index_not_record_order(shared, tmp_path):
    people = json.loads((shared / "mpii/test_mpii.json").read_text())
    twin = dict(people[0], joints=[[x + 60, y + 10] for x, y in people[0]["joints"]],
                center=[people[0]["center"][0] + 60, people[0]["center"][1] + 10])
    people.insert(2, twin)                       # two people in one image: record order != json order
    records, gt = _mpii_val(shared, tmp_path, people, "valid")
    shuffled = [people[i] for i in (4, 2, 5, 0, 3, 1)]
    records_s, gt_s = _mpii_val(shared, tmp_path, shuffled, "shuffled")
    stats, order = _pckh_of_targets(records, gt)
    stats_s, order_s = _pckh_of_targets(records_s, gt_s)
    assert order != sorted(order)                # the records do not hold the people in json order
    assert stats["Mean"] > 90 and stats["unpredicted_people"] == 0
    for key in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1"):
        assert stats_s[key] == pytest.approx(stats[key]), key
