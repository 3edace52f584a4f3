"""COCO evaluation, OKS-NMS, MPII PCKh and AIC mAP on real annotations and hand-built cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from posedual_tf import joints
from posedual_tf.evaluation import aic, coco, mpii


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
    assert list(stats) == list(coco.STAT_NAMES)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


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

    from tfrecords_tools import mpii as mpii_tool
    from tfrecords_tools import writer

    (tmp_path / f"{tag}.json").write_text(json.dumps(people))
    entries, _ = mpii_tool.build_entries(str(tmp_path / f"{tag}.json"), str(shared / "mpii"))
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
    ds, src = pipeline.eval_dataset(cfg, batch_size=4)
    instances = []
    for b in ds:
        coords, maxvals = codec.decode_heatmaps(b["target"], b["center"], b["scale"], None, "shift", False)
        for i in range(coords.shape[0]):
            instances.append({"keypoints": np.concatenate([coords[i], maxvals[i][:, None]], -1),
                              "ann_id": int(b["ann_id"][i]), "image_id": int(b["image_id"][i])})
    return runner.score(cfg, src, instances)[0], [i["ann_id"] for i in instances]


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
