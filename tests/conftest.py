"""Shared fixtures: paths to the real samples in ../shared/data and converted records."""
from __future__ import annotations

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("POSEDUAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def need_shared() -> pathlib.Path:
    if not SHARED.exists():
        pytest.skip(f"real samples not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
    return need_shared()


@pytest.fixture(scope="session")
def coco_records(tmp_path_factory, shared):
    """test_coco.json converted (4 images, 12 people) -> prefix."""
    from tfrecords_tools import coco

    out = tmp_path_factory.mktemp("coco") / "val"
    coco.convert(str(shared / "coco/test_coco.json"), str(shared / "coco"), str(out), workers=1)
    return str(out)


@pytest.fixture(scope="session")
def det_records(tmp_path_factory, shared):
    """image_info_test_coco.json + test_coco_det_AP_H_56.json converted -> prefix."""
    from tfrecords_tools import detections

    out = tmp_path_factory.mktemp("det") / "det"
    detections.convert(str(shared / "coco/image_info_test_coco.json"), str(shared / "coco/test_coco_det_AP_H_56.json"),
                       str(shared / "coco"), str(out), workers=1)
    return str(out)
