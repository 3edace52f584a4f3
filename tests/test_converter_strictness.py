"""Malformed converter input is skipped and listed (or one error line), never stored or silently lost."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from posedual_tf import config
from posedual_tf.data import pipeline, records
from posedual_tf.data.settings import EvalDataSettings
from posedual_tf.conversion import aic, coco, detections, mpii


def _convert(tool: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"tfrecords_tools.{tool}", *args], capture_output=True, text=True,
                          timeout=300)


def _coco(shared):
    return json.loads((shared / "coco/test_coco.json").read_text())


def _kept(ann):
    return [a for a in ann["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0]


def _reasons(skipped):
    return {s.get("annotation", s.get("detection", s.get("image"))): s["reason"] for s in skipped}


BAD_ANNOTATIONS = [
    ("bbox", [10, 10, -5, 40], "bbox has no area (w or h <= 0)"),
    ("bbox", [10, float("nan"), 5, 40], "bbox is not 4 finite numbers"),
    ("bbox", [10, "x", 5, 40], "bbox is not 4 finite numbers"),
    ("keypoints", "nan", "keypoints are not finite numbers"),
    ("keypoints", "text", "keypoints are not finite numbers"),
    ("keypoints", "vis-1", "visibility not in {0, 1, 2}"),
    ("area", float("inf"), "area is not a finite number"),
]


@pytest.mark.parametrize("key,value,reason", BAD_ANNOTATIONS)
def test_coco_malformed_annotation_is_skipped_and_listed(shared, tmp_path, key, value, reason):
    ann = _coco(shared)
    n_kept = len(_kept(ann))
    bad = _kept(ann)[0]
    if key == "keypoints":
        k = list(bad["keypoints"])
        k[3] = {"nan": float("nan"), "text": "12", "vis-1": k[3]}[value]
        if value == "vis-1":
            k[2] = -1
        value = k
    bad[key] = value
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ann))                    # NaN / Infinity as Python's json writes them
    entries, skipped, _, _ = coco.build_entries(str(path), str(shared / "coco"))
    stored = {p.ann_id for e in entries for p in e.persons}
    assert bad["id"] not in stored and len(stored) == n_kept - 1
    assert _reasons(skipped)[bad["id"]] == reason


def test_coco_duplicated_and_unknown_image_ids_are_listed(shared, tmp_path):
    ann = _coco(shared)
    first = ann["images"][0]
    ann["images"].append(dict(first, file_name="000000040083.jpg"))     # another file claiming the same id
    ann["annotations"].append(dict(_kept(ann)[0], id=999, image_id=424242))
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ann))
    entries, skipped, _, _ = coco.build_entries(str(path), str(shared / "coco"))
    files = [e.filename for e in entries]
    assert files.count("000000040083.jpg") == 1                          # only its own record, with its own people
    assert {"image": "000000040083.jpg", "image_id": first["id"], "instances": 0,
            "reason": "duplicate image id (first at images[0])"} in skipped
    assert {"annotation": 999, "image_id": 424242, "reason": "unknown image id"} in skipped


def test_detections_with_non_finite_score_or_box_are_skipped(shared, tmp_path):
    dets = json.loads((shared / "coco/test_coco_det_AP_H_56.json").read_text())
    dets[0]["score"] = float("nan")
    dets[1]["bbox"] = [1, 2, float("inf"), 4]
    dets[2]["bbox"] = [1, 2, 0, 4]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(dets))
    _, skipped = detections.build_entries(str(shared / "coco/image_info_test_coco.json"), str(path),
                                          str(shared / "coco"))
    reasons = _reasons(skipped)
    assert reasons[0] == "score is not a finite number"
    assert reasons[1] == "bbox is not 4 finite numbers" and reasons[2] == "bbox has no area (w or h <= 0)"


def test_aic_swapped_corners_are_skipped(shared, tmp_path):
    data = json.loads((shared / "aic/keypoint_annotations_example.json").read_text())
    human = next(iter(data[0]["human_annotations"]))
    x1, y1, x2, y2 = data[0]["human_annotations"][human]
    data[0]["human_annotations"][human] = [x2, y1, x1, y2]
    path = tmp_path / "aic.json"
    path.write_text(json.dumps(data))
    entries, skipped = aic.build_entries(str(path), str(shared / "aic"))
    assert {"image": data[0]["image_id"], "annotation": human,
            "reason": "box corners swapped or box empty (x2 <= x1 or y2 <= y1)"} in skipped
    assert all(p.box[2] > 0 and p.box[3] > 0 for e in entries for p in e.persons)


def test_mpii_negative_scale_is_skipped(shared, tmp_path):
    data = json.loads((shared / "mpii/test_mpii.json").read_text())
    data[1]["scale"] = -4
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    entries, skipped = mpii.build_entries(str(path), str(shared / "mpii"))
    assert skipped == [{"image": data[1]["image"], "annotation": 1, "reason": "scale is not a finite number > 0"}]
    assert sum(len(e.persons) for e in entries) == len(data) - 1


def test_wrong_images_folder_fails_instead_of_writing_an_empty_shard(shared, tmp_path):
    proc = _convert("coco", "--annotations", str(shared / "coco/test_coco.json"), "--images", str(tmp_path),
                    "--output", str(tmp_path / "out" / "val"), "--workers", "1")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "wrote no people: none of the images were found under the images folder" in last
    assert "'missing file': 4" in last


def test_a_folder_as_output_prefix_is_an_error(shared, tmp_path):
    for out in (f"{tmp_path}/data/", str(tmp_path)):
        proc = _convert("coco", "--annotations", str(shared / "coco/test_coco.json"), "--images",
                        str(shared / "coco"), "--output", out)
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
        assert "expected a prefix, not a folder" in proc.stderr
    assert not list((tmp_path).glob("**/*.tfrecord")) and not list(tmp_path.glob("**/.json"))


def test_reconverting_into_fewer_shards_leaves_only_the_listed_ones(shared, tmp_path):
    prefix = str(tmp_path / "val")
    coco.convert(str(shared / "coco/test_coco.json"), str(shared / "coco"), prefix, num_shards=4, workers=1)
    assert len(list(tmp_path.glob("val-*.tfrecord"))) == 4
    coco.convert(str(shared / "coco/test_coco.json"), str(shared / "coco"), prefix, num_shards=2, workers=1)
    assert sorted(p.name for p in tmp_path.glob("val-*.tfrecord")) == [
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    other = tmp_path / "val-00000-of-00004.tfrecord.keep"       # not of our naming pattern: left alone
    other.write_text("mine")
    coco.convert(str(shared / "coco/test_coco.json"), str(shared / "coco"), prefix, num_shards=1, workers=1)
    assert other.read_text() == "mine"
    cfg = config.load("coco1k_sup", [f"data.val.records={prefix}"])
    ds, src = pipeline.eval_dataset(EvalDataSettings.from_config(cfg))
    assert sum(int(b["image"].shape[0]) for b in ds) == src.num_instances == 12    # each person once
    assert records.read_manifest(prefix)["num_instances"] == 12


def test_unwritable_output_and_os_errors_are_one_line(shared, tmp_path):
    from posedual_tf import cli

    (tmp_path / "afile").write_text("x")
    proc = _convert("coco", "--annotations", str(shared / "coco/test_coco.json"), "--images", str(shared / "coco"),
                    "--output", str(tmp_path / "afile" / "sub" / "val"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --output {tmp_path}/afile/sub/val: cannot create")
    # a full disk reads as its path and reason, like every OSError
    assert cli.one_line(OSError(28, "No space left on device", "/data/x.tfrecord")) == \
        "/data/x.tfrecord: No space left on device"
    assert cli.one_line(KeyError("k")).startswith("'k'")
    assert cli.one_line(RuntimeError("boom\nmore")) == "RuntimeError: boom (run with --debug for the traceback)"
