"""Detector options: the lighter MobileNetV3 Faster R-CNN behind the same interface, the input size
setting, channels_last and autocast. Random weights (tests never download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

from okspose.inference.detector import PersonDetector


def test_mobilenet_detector_with_small_input_and_bf16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "mobilenet.pth"
    torch.save(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), path)
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    for dtype in (None, torch.bfloat16):
        det = PersonDetector(path, arch="mobilenet", top_k=5, min_size=96, amp_dtype=dtype)
        assert det.model.transform.min_size == (96,) and det.model.transform.max_size == 160
        assert det.model.backbone.body["0"][0].weight.is_contiguous(memory_format=torch.channels_last)
        (boxes, scores), = det.detect([image])
        assert boxes.dtype == np.float64 and boxes.shape == (len(scores), 4) and len(scores) <= 5
        assert np.all(np.diff(scores) <= 0)
