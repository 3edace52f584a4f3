"""Evaluation: COCO keypoint AP (pycocotools), MPII PCKh, AI Challenger mAP, and the predict loop."""
