"""Detector options: the lighter MobileNetV3 Faster R-CNN behind the same interface, the input size
setting, channels_last and autocast. Random weights (tests never download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import assert_boxes_in_picture, person_biased
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

from okspose.inference.detector import PersonDetector


def test_mobilenet_detector_with_small_input_and_bf16(tmp_path: Path) -> None:
    """MobileNet at a 64-pixel shorter side, fp32 and under bf16 autocast: top_k person boxes (the classifier
    biased to person, so random weights find some), float64, mapped back into the 96x128 picture."""
    torch.manual_seed(0)
    path = tmp_path / "mobilenet.pth"
    torch.save(person_biased(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict()),
               path)
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    for dtype in (None, torch.bfloat16):
        det = PersonDetector(path, arch="mobilenet", top_k=5, min_size=64, amp_dtype=dtype)
        assert det.model.transform.min_size == (64,) and det.model.transform.max_size == 107
        assert det.model.backbone.body["0"][0].weight.is_contiguous(memory_format=torch.channels_last)
        (boxes, scores), = det.detect([image])
        assert boxes.shape == (5, 4) and scores.shape == (5,)
        assert_boxes_in_picture(boxes, scores, image.shape)


def test_the_detector_follows_test_fast_and_keeps_det_amp_a_choice(tmp_path: Path, monkeypatch) -> None:
    """channels_last with test.fast (the default), the layout torchvision builds with test.fast=false; no
    autocast unless test.det_amp asks, even on a CPU with native bf16 (stubbed)."""
    from okspose.config import load_config
    from okspose.inference import runtime
    from okspose.inference.boxes import BoxSource, make_detector

    path = tmp_path / "mobilenet.pth"
    torch.save(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), path)
    monkeypatch.setattr(runtime, "fast_bf16_cpu", lambda: True)
    cpu, source = torch.device("cpu"), BoxSource("mobilenet", str(path))
    for fast in (True, False):
        for det_amp, dtype in (("none", None), ("auto", torch.bfloat16)):
            det = make_detector(source, load_config(None, [f"test.fast={fast}", f"test.det_amp={det_amp}"]), cpu)
            weight = det.model.backbone.body["0"][0].weight
            assert weight.is_contiguous(memory_format=torch.channels_last) == fast
            assert det.amp_dtype == dtype
