"""tfrecords_tools on the real samples: bytes, boxes, keypoints, counts, subsets, corruption, resume."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from posedual_tf import joints
from posedual_tf.data import records
from posedual_tf.conversion import coco, detections, mpii, writer


def _convert(tool: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"tfrecords_tools.{tool}", *args], capture_output=True, text=True,
                          timeout=300)


def test_coco_records_match_annotations(shared, coco_records):
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    recs = records.read_all(coco_records)
    assert [r["image/id"] for r in recs] == [im["id"] for im in ann["images"]]
    by_id = {a["id"]: a for a in ann["annotations"]}
    sizes = {im["id"]: (im["width"], im["height"]) for im in ann["images"]}
    n = 0
    for r in recs:
        src = shared / "coco" / r["image/filename"].decode()
        assert r["image/encoded"] == src.read_bytes()
        for box, raw, kp, aid in zip(r["boxes"], r["raw_boxes"], r["keypoints"], r["ann_ids"]):
            a = by_id[int(aid)]
            w_img, h_img = sizes[a["image_id"]]
            x, y, w, h = a["bbox"]
            x1, y1 = max(0, x), max(0, y)
            x2, y2 = min(w_img - 1, x1 + max(0, w - 1)), min(h_img - 1, y1 + max(0, h - 1))
            np.testing.assert_allclose(box, [x1, y1, x2 - x1, y2 - y1], rtol=1e-6)
            np.testing.assert_allclose(raw, a["bbox"], rtol=1e-6)
            k = np.array(a["keypoints"], np.float32).reshape(17, 3)
            np.testing.assert_allclose(kp[:, :2], k[:, :2])
            np.testing.assert_array_equal(kp[:, 2], np.minimum(k[:, 2], 1))
            n += 1
    # reference rule: non-crowd person annotations with at least one labelled keypoint
    expected = [a for a in ann["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0]
    assert n == len(expected) == 12
    manifest = records.read_manifest(coco_records)
    assert manifest["num_instances"] == 12 and manifest["skipped_by_reason"] == {"no keypoints": 2}
    assert manifest["sources"][0]["sha256"] == writer.sha256_file(str(shared / "coco/test_coco.json"))


def test_max_instances_takes_first_in_file_order(shared, tmp_path):
    out = tmp_path / "sub"
    proc = _convert("coco", "--annotations", str(shared / "coco/test_coco.json"), "--images", str(shared / "coco"),
                    "--output", str(out), "--max-instances", "4", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-1500:]
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    order = {im["id"]: i for i, im in enumerate(ann["images"])}
    kept = [a for a in sorted(ann["annotations"], key=lambda a: order[a["image_id"]])
            if not a["iscrowd"] and max(a["keypoints"]) > 0][:4]
    got = [int(i) for r in records.read_all(str(out)) for i in r["ann_ids"]]
    assert got == [a["id"] for a in kept]


def test_detections_tool(shared, det_records):
    dets = json.loads((shared / "coco/test_coco_det_AP_H_56.json").read_text())
    recs = records.read_all(det_records)
    got = sorted((int(r["image/id"]), *np.round(b, 2), round(float(s), 5))
                 for r in recs for b, s in zip(r["raw_boxes"], r["scores"]))
    want = sorted((d["image_id"], *np.round(np.float32(d["bbox"]), 2), round(float(np.float32(d["score"])), 5))
                  for d in dets)
    assert len(got) == 118 and got == want
    assert all((r["has_keypoints"] == 0).all() for r in recs)
    out = det_records + "_thr"
    entries, skipped = detections.build_entries(str(shared / "coco/image_info_test_coco.json"),
                                                str(shared / "coco/test_coco_det_AP_H_56.json"), str(shared / "coco"), 0.5)
    m = writer.write_dataset(entries, out, joint_set=joints.COCO, sources=[], skipped=skipped, workers=1)
    assert m["num_instances"] == sum(d["score"] >= 0.5 for d in dets)
    assert m["num_skipped"] == sum(d["score"] < 0.5 for d in dets)


def test_aic_tool(shared, tmp_path):
    out = tmp_path / "aic"
    proc = _convert("aic", "--annotations", str(shared / "aic/keypoint_annotations_example_3imgs.json"),
                    "--images", str(shared / "aic"), "--output", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-1500:]
    raw = json.loads((shared / "aic/keypoint_annotations_example_3imgs.json").read_text())
    recs = records.read_all(str(out))
    assert len(recs) == 3 and records.read_manifest(str(out))["joint_set"] == "aic"
    for item, r in zip(raw, recs):
        assert r["image/encoded"] == (shared / "aic" / (item["image_id"] + ".jpg")).read_bytes()
        assert r["image/height"] > 0 and r["image/width"] > 0
        for human, kp, box in zip(item["keypoint_annotations"], r["keypoints"], r["boxes"]):
            k = np.array(item["keypoint_annotations"][human], np.float32).reshape(14, 3)
            x1, y1, x2, y2 = item["human_annotations"][human]
            np.testing.assert_allclose(box, [x1, y1, x2 - x1, y2 - y1])
            np.testing.assert_allclose(kp[:, :2], k[:, :2])
            np.testing.assert_array_equal(kp[:, 2], (k[:, 2] < 3).astype(np.float32))


def test_mpii_tool(shared, tmp_path):
    out = tmp_path / "mpii"
    entries, _ = mpii.build_entries(str(shared / "mpii/test_mpii.json"), str(shared / "mpii"))
    writer.write_dataset(entries, str(out), joint_set=joints.MPII, sources=[], workers=1)
    raw = json.loads((shared / "mpii/test_mpii.json").read_text())
    recs = {r["image/filename"].decode(): r for r in records.read_all(str(out))}
    from posedual_tf import geometry

    for item in raw:
        r = recs[item["image"]]
        np.testing.assert_allclose(r["keypoints"][0, :, :2], np.array(item["joints"]) - 1, rtol=1e-6)
        np.testing.assert_array_equal(r["keypoints"][0, :, 2], item["joints_vis"])
        # the stored box gives back the reference centre and x-scale through the pipeline rule
        c, s = geometry.box_to_center_scale(r["boxes"][0], aspect_ratio=1.0)
        cx, cy = item["center"]
        ref_s = item["scale"] * 1.25
        np.testing.assert_allclose(c, [cx - 1, cy + 15 * item["scale"] - 1], rtol=1e-5)
        np.testing.assert_allclose(s, [ref_s, ref_s], rtol=1e-5)


def test_corrupt_images_are_skipped_and_listed(shared, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(shared / "coco", images)
    truncated = images / "000000040083.jpg"
    truncated.write_bytes(truncated.read_bytes()[:20000])
    (images / "000000196141.jpg").write_bytes(b"\xff\xd8garbage" + b"\x00" * 100 + b"\xff\xd9")
    os.remove(images / "000000197388.jpg")
    kept = images / "000000000785.jpg"            # bytes after the end-of-image marker, as cameras append
    kept.write_bytes(kept.read_bytes() + bytes(range(210)))
    out = tmp_path / "rec"
    proc = _convert("coco", "--annotations", str(shared / "coco/test_coco.json"), "--images", str(images),
                    "--output", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-1500:]
    m = records.read_manifest(str(out))
    reasons = {s["image"]: s["reason"] for s in m["skipped"] if "image" in s}
    assert "truncated" in reasons["000000040083.jpg"]
    assert "undecodable" in reasons["000000196141.jpg"]
    assert reasons["000000197388.jpg"] == "missing file"
    assert m["num_images"] == 1 and [r["image/id"] for r in records.read_all(str(out))] == [785]
    assert "000000000785.jpg" not in reasons


def test_malformed_annotations_give_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 10}], "annotations": [],
                               "categories": [{"id": 1, "name": "person", "keypoints": ["nose"] * 0 + list(
                                   joints._COCO_LONG_NAMES)}]}))
    proc = _convert("coco", "--annotations", str(bad), "--images", str(tmp_path), "--output", str(tmp_path / "o"))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"error: {bad}: images[0]: missing field 'height'"
    (tmp_path / "broken.json").write_text("{not json")
    proc = _convert("coco", "--annotations", str(tmp_path / "broken.json"), "--images", str(tmp_path),
                    "--output", str(tmp_path / "o"))
    assert "not valid JSON" in proc.stderr.strip().splitlines()[-1]


def test_interrupted_run_resumes_to_same_output(shared, tmp_path):
    """Kill a conversion mid-way, re-run: the shards equal an uninterrupted conversion."""
    images = tmp_path / "images"
    images.mkdir()
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    # 400 images (100 links to each of the 4) in 40 shards, so that there is time to interrupt
    new_images, new_anns = [], []
    for copy in range(100):
        for im in ann["images"]:
            name = f"{copy}_{im['file_name']}"
            if copy:
                os.link(images / f"0_{im['file_name']}", images / name)
            else:
                shutil.copy(shared / "coco" / im["file_name"], images / name)
            new_images.append(dict(im, id=im["id"] * 10 + copy, file_name=name))
        for a in ann["annotations"]:
            new_anns.append(dict(a, id=a["id"] * 10 + copy, image_id=a["image_id"] * 10 + copy))
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(dict(ann, images=new_images, annotations=new_anns)))
    args = ["--annotations", str(ann_file), "--images", str(images), "--num-shards", "40", "--workers", "1"]
    ref = _convert("coco", *args, "--output", str(tmp_path / "ref" / "x"))
    assert ref.returncode == 0, ref.stderr[-1500:]
    out = tmp_path / "run" / "x"
    proc = subprocess.Popen([sys.executable, "-m", "tfrecords_tools.coco", *args, "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(str(out) + ".parts/00002.json"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(records.manifest_path(str(out)))
    again = _convert("coco", *args, "--output", str(out))
    assert again.returncode == 0, again.stderr[-1500:]
    m = records.read_manifest(str(out))
    assert m["stats"]["shards_reused"] >= 1
    ref_m = records.read_manifest(str(tmp_path / "ref" / "x"))
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in ref_m["shards"]]
    assert not [p for p in os.listdir(out.parent) if ".tmp" in p]


def test_inspect_draws_images(coco_records, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tfrecords_tools.inspect", coco_records, "--draw", str(tmp_path),
                           "--limit", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "joint set coco (17 joints), 4 images, 12 people" in proc.stdout
    import cv2

    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 2
    drawn = cv2.imread(str(tmp_path / pngs[0]))
    from posedual_tf import drawing

    assert drawn is not None
    for colour in (drawing.LEFT, drawing.RIGHT):          # left and right limbs and joints in their colours
        assert (drawn == colour).all(axis=-1).sum() > 20, colour


def test_custom_keypoint_set_converts(shared, tmp_path):
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    names = ["lsho", "rsho", "lhip", "rhip"]
    idx = [5, 6, 11, 12]
    ann["categories"][0]["keypoints"] = names
    for a in ann["annotations"]:
        k = np.array(a["keypoints"]).reshape(17, 3)[idx]
        a["keypoints"] = k.ravel().tolist()
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(ann))
    entries, skipped, jset, _ = coco.build_entries(str(path), str(shared / "coco"))
    assert jset.name == "custom" and jset.to_union == (14, 17, 4, 1)
    assert sum(len(e.persons) for e in entries) == sum(
        1 for a in ann["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0)


def test_instance_rule_is_the_references_area_test_then_box_clean_up(shared, tmp_path):
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    keep = [a for a in ann["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0]
    keep[0]["area"] = 0.0                                  # area field 0, box fine: the reference drops it
    keep[1]["bbox"][2], keep[1]["area"] = 0.5, 1.0           # a 0.5 px wide box with area > 0: kept, width 0
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ann))
    entries, skipped, _, notes = coco.build_entries(str(path), str(shared / "coco"))
    people = {p.ann_id: p for e in entries for p in e.persons}
    assert keep[0]["id"] not in people
    assert {"annotation": keep[0]["id"], "image_id": keep[0]["image_id"], "reason": "area not > 0"} in skipped
    assert people[keep[1]["id"]].box[2] == 0.0 and notes == {}
    # CrowdPose-style files have no 'area': the raw box's w * h stands in, and the manifest says so
    for a in ann["annotations"]:
        a.pop("area")
    path.write_text(json.dumps(ann))
    entries, skipped, _, notes = coco.build_entries(str(path), str(shared / "coco"))
    assert sum(len(e.persons) for e in entries) == len(keep)
    assert notes["area_from_box"].startswith(f"{len(ann['annotations'])} annotations have no 'area' field")


CROWDPOSE_NAMES = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                   "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck"]


def _crowdpose_like(shared, tmp_path):
    """test_coco.json rewritten as CrowdPose lays out a file: 12 COCO long names + head + neck, no area."""
    ann = json.loads((shared / "coco/test_coco.json").read_text())
    ann["categories"][0]["keypoints"] = CROWDPOSE_NAMES
    for a in ann["annotations"]:
        k = np.array(a["keypoints"], np.float32).reshape(17, 3)
        head = k[0] if k[0, 2] > 0 else np.zeros(3)
        neck = (k[5] + k[6]) / 2 if k[5, 2] > 0 and k[6, 2] > 0 else np.zeros(3)
        a["keypoints"] = np.concatenate([k[5:], [head, neck]]).ravel().tolist()
        a.pop("area")
    path = tmp_path / "crowdpose.json"
    path.write_text(json.dumps(ann))
    return path, ann


def test_crowdpose_style_json_converts_by_name(shared, tmp_path):
    path, ann = _crowdpose_like(shared, tmp_path)
    proc = _convert("coco", "--annotations", str(path), "--images", str(shared / "coco"), "--output",
                    str(tmp_path / "cp"), "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-1500:]
    manifest = records.read_manifest(str(tmp_path / "cp"))
    jset = joints.from_manifest(manifest)
    names = joints.UNION_NAMES
    assert [names[u] for u in jset.to_union] == ["lsho", "rsho", "lelb", "relb", "lwri", "rwri", "lhip", "rhip",
                                                  "lkne", "rkne", "lank", "rank", "head", "neck"]
    assert "area_from_box" in manifest["notes"] and manifest["num_instances"] == 12
    # --keypoint-map places a name elsewhere (CrowdPose's head is the top of the head)
    proc = _convert("coco", "--annotations", str(path), "--images", str(shared / "coco"), "--output",
                    str(tmp_path / "cp2"), "--workers", "1", "--keypoint-map", "head=head_top")
    assert proc.returncode == 0, proc.stderr[-1500:]
    jset2 = joints.from_manifest(records.read_manifest(str(tmp_path / "cp2")))
    assert names[jset2.to_union[12]] == "head_top" and jset2.names == tuple(CROWDPOSE_NAMES)


def test_unplaceable_names_and_count_mismatch_are_one_line_errors(shared, tmp_path):
    path, ann = _crowdpose_like(shared, tmp_path)
    ann["categories"][0]["keypoints"][12] = "crown"
    path.write_text(json.dumps(ann))
    proc = _convert("coco", "--annotations", str(path), "--images", str(shared / "coco"), "--output",
                    str(tmp_path / "x"))
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "['crown']" in proc.stderr and "--keypoint-map crown=<union name>" in proc.stderr
    # HumanArt-style: 21 names in the category, 17 joints in the annotations
    human = json.loads((shared / "coco/test_coco.json").read_text())
    human["categories"][0]["keypoints"] = human["categories"][0]["keypoints"] + ["a", "b", "c", "d"]
    path.write_text(json.dumps(human))
    proc = _convert("coco", "--annotations", str(path), "--images", str(shared / "coco"), "--output",
                    str(tmp_path / "x"), "--keypoint-map", "a=belly,b=thorax,c=upper_neck,d=root")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "holds 51 numbers (17 joints)" in proc.stderr and "names 21" in proc.stderr
    assert "--keypoint-names" in proc.stderr
    coco_names = ",".join(json.loads((shared / "coco/test_coco.json").read_text())["categories"][0]["keypoints"])
    proc = _convert("coco", "--annotations", str(path), "--images", str(shared / "coco"), "--output",
                    str(tmp_path / "h"), "--workers", "1", "--keypoint-names", coco_names)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert records.read_manifest(str(tmp_path / "h"))["joint_set"] == "coco"


def test_inspect_reports_corrupt_and_truncated_shards_in_one_line(shared, coco_records, tmp_path):
    import glob

    prefix = str(tmp_path / "val")
    for f in glob.glob(coco_records + "*"):
        if os.path.isfile(f):
            shutil.copy(f, tmp_path / os.path.basename(f).replace(os.path.basename(coco_records), "val"))
    shard = records.shard_paths(prefix, 1)[0]
    data = bytearray(open(shard, "rb").read())
    data[40:400] = b"\xff" * 360                       # the first record's payload: no longer a protobuf
    open(shard, "wb").write(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "tfrecords_tools.inspect", prefix, "--verify"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and not proc.stderr.strip().count("Traceback")
    assert f"corrupt: 1 records of {shard} do not parse or decode" in proc.stdout
    assert "verified 4 records: 1 corrupt" in proc.stdout
    open(shard, "wb").write(bytes(data[:-100]))       # cut: the last record runs past the end
    proc = subprocess.run([sys.executable, "-m", "tfrecords_tools.inspect", prefix, "--verify"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {shard}: truncated TFRecord shard")


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            if int(open(stat).read().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.split("/")[2]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_killed_converter_leaves_no_worker_processes(tmp_path):
    from benchmarks.common import replicated_coco

    ann, images = replicated_coco(tmp_path / "src", 40)
    proc = subprocess.Popen([sys.executable, "-m", "tfrecords_tools.coco", "--annotations", str(ann), "--images",
                             str(images), "--output", str(tmp_path / "out" / "x"), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the converter's pool never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert [w for w in workers if _alive(w)] == []


def test_progress_prints_lines_when_not_on_a_terminal(shared, tmp_path):
    import io

    from posedual_tf.progress import Progress

    log = io.StringIO()
    bar = Progress(40, "convert", "img", stream=log, every_percent=25)
    for _ in range(40):
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["convert: 25%", "convert: 50%", "convert: 75%", "convert: 100%"]
    assert lines[-1].startswith("convert: 100% (40/40 img, ")
    proc = _convert("coco", "--annotations", str(shared / "coco/test_coco.json"), "--images", str(shared / "coco"),
                    "--output", str(tmp_path / "v"), "--workers", "1")
    assert proc.returncode == 0 and "v: 100% (4/4 img" in proc.stderr      # a log file sees progress too
