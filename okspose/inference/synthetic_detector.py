"""The demo's person detector: a small torchvision FCOS (or Faster R-CNN) trained on the synthetic people
scenes on CPU in a few minutes, because the demo runs offline where no detector weights can be downloaded.

It is trained and cached by the demo and loaded by ``--detector synthetic --detector-weights PATH``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import MultiScaleRoIAlign

from okspose.data.records import DataError, read_annotation_file, read_image
from okspose.fileio import save_checkpoint
from okspose.inference.detections import DEFAULT_SCORE_FLOOR, DEFAULT_TOP_K
from okspose.inference.detector import MIN_CANDIDATE_SCORE, DetectorWeightsError, PersonDetector


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """A plain conv net with stride-8 and stride-16 outputs, small enough to train from scratch on two
    CPU cores in minutes (about 0.1 GMAC for a 160x128 input).

    The dilated last conv widens the receptive field to about 120 px, a whole synthetic person at the
    half resolution the detectors below run at. A top-down sum gives the stride-8 level context, as in FPN.
    """

    def __init__(self, out_channels: int = 64) -> None:
        super().__init__()
        self.c3 = nn.Sequential(_conv(3, 24, 2), _conv(24, 24), _conv(24, 48, 2), _conv(48, 48),
                                _conv(48, 64, 2), _conv(64, 64))
        self.c4 = nn.Sequential(_conv(64, 96, 2), _conv(96, 96, dilation=2))
        self.lat3 = nn.Conv2d(64, out_channels, 1)
        self.lat4 = nn.Conv2d(96, out_channels, 1)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c3 = self.c3(x)
        p4 = self.lat4(self.c4(c3))
        p3 = self.lat3(c3) + nn.functional.interpolate(p4, size=c3.shape[-2:], mode="nearest")
        return OrderedDict([("0", p3), ("1", p4)])


SYNTHETIC_ARCHS = ("fcos", "frcnn")


def build_synthetic_detector(arch: str = "fcos", image_size: tuple[int, int] = (320, 256),
                             scale: float = 0.5) -> nn.Module:
    """A 2-class (background, person) torchvision detector on :class:`TinyBackbone` for the synthetic scenes.

    It runs at ``scale`` x ``image_size`` (its transform resizes, and maps boxes back): the cartoon
    people stay 15-120 px tall at half resolution, and compute drops 4x. ``"fcos"`` is anchor-free and
    one-stage; ``"frcnn"`` is Faster R-CNN with tall anchors and proposal counts cut to fit scenes of at
    most three people.
    """
    width, height = (round(v * scale) for v in image_size)
    backbone = TinyBackbone()
    resize = {"min_size": min(width, height), "max_size": max(width, height)}
    if arch == "fcos":
        # Point "anchors" one stride wide: level 0 takes people up to 64 px (8 x its size), level 1 the rest.
        anchors = AnchorGenerator(sizes=((8,), (16,)), aspect_ratios=((1.0,), (1.0,)))
        head = FCOSHead(backbone.out_channels, 1, num_classes=2, num_convs=2)
        return FCOS(backbone, num_classes=2, anchor_generator=anchors, head=head, score_thresh=MIN_CANDIDATE_SCORE,
                    detections_per_img=DEFAULT_TOP_K, topk_candidates=200, **resize)
    if arch == "frcnn":
        anchors = AnchorGenerator(sizes=((16, 32), (64, 128)), aspect_ratios=((1.0, 2.0, 3.0),) * 2)
        roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1"], output_size=7, sampling_ratio=2)
        return FasterRCNN(
            backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
            box_head=TwoMLPHead(backbone.out_channels * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, 2),
            rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
            rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
            rpn_batch_size_per_image=128, box_batch_size_per_image=64,
            box_score_thresh=MIN_CANDIDATE_SCORE, box_detections_per_img=DEFAULT_TOP_K, **resize,
        )
    raise ValueError(f"unknown synthetic detector {arch!r}; choose from {SYNTHETIC_ARCHS}")


def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _training_set(data_root: Path, split: str) -> tuple[list[torch.Tensor], list[torch.Tensor], Path]:
    """All images of a synthetic split as uint8 [3, H, W] tensors with their person boxes (xyxy)."""
    ann_file = data_root / "annotations" / f"person_keypoints_{split}.json"
    data = read_annotation_file(ann_file)
    boxes: dict[int, list[list[float]]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if ann.get("category_id", 1) == 1 and not ann.get("iscrowd", 0):
            x, y, w, h = ann["bbox"]
            if w > 1 and h > 1:
                boxes[ann["image_id"]].append([x, y, x + w, y + h])
    images, targets = [], []
    for img in data["images"]:
        images.append(torch.from_numpy(read_image(str(data_root / split / img["file_name"]))).permute(2, 0, 1))
        targets.append(torch.tensor(boxes[img["id"]], dtype=torch.float32).reshape(-1, 4))
    if not images:
        raise DataError(f"{ann_file}: no images to train the detector on")
    return images, targets, ann_file


def _augment(image: torch.Tensor, boxes: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """Mirror half the pictures and jitter brightness/contrast: cheap, and boxes stay exact."""
    x = image.float().div(255)
    if rng.random() < 0.5:
        x = x.flip(-1)
        w = image.shape[-1]
        boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-0.1, 0.1)
    x = ((x - 0.5) * gain + 0.5 + bias).clamp_(0, 1)
    return x, boxes


def train_synthetic_detector(
    data_root: str | Path,
    out_path: str | Path,
    minutes: float = 3.0,
    *,
    arch: str = "fcos",
    scale: float = 0.5,
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    split: str = "train",
    force: bool = False,
    log_every: int = 100,
) -> Path:
    """Train :func:`build_synthetic_detector` on ``data_root``'s synthetic split; cache it at ``out_path``.

    Training ends after ``steps`` steps or ``minutes`` of wall-clock, whichever comes first; the
    cosine learning-rate schedule follows whichever is further along, so a time-capped run still
    anneals. Results are bit-identical for a seed when the step count ends it. A checkpoint already at
    ``out_path`` that was trained with the same settings on the same annotation file is reused.
    """
    if arch not in SYNTHETIC_ARCHS:
        raise ValueError(f"unknown synthetic detector {arch!r}; choose from {SYNTHETIC_ARCHS}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got {steps} and {batch_size}")
    data_root, out_path = Path(data_root), Path(out_path)
    images, targets, ann_file = _training_set(data_root, split)
    size = (int(images[0].shape[2]), int(images[0].shape[1]))
    meta = {"arch": arch, "version": 1, "image_size": list(size), "scale": scale, "seed": seed, "steps": steps,
            "batch_size": batch_size, "lr": lr, "data": _file_digest(ann_file)}
    if out_path.is_file() and not force:
        try:
            cached = torch.load(out_path, map_location="cpu", weights_only=True)
            if {k: cached["meta"].get(k) for k in meta} == meta:
                print(f"synthetic detector already trained: {out_path}")
                return out_path
        except Exception:  # unreadable or foreign file: train again and replace it
            pass

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = build_synthetic_detector(arch, size, scale)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        warmup = max(1, min(100, steps // 10))
        budget = max(minutes, 1e-3) * 60
        start, step, order, running = time.perf_counter(), 0, np.empty(0, np.int64), 0.0
        while True:
            progress = max(step / steps, (time.perf_counter() - start) / budget)
            if progress >= 1:
                break
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
            if len(order) < batch_size:
                order = np.concatenate([order, rng.permutation(len(images))])
            idx, order = order[:batch_size], order[batch_size:]
            batch = [_augment(images[i], targets[i], rng) for i in idx]
            losses = model([x for x, _ in batch],
                           [{"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)} for _, b in batch])
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            value = float(loss.detach())
            running = 0.9 * running + 0.1 * value if step > 1 else value
            if log_every and step % log_every == 0:
                print(f"detector step {step}: loss {running:.3f} ({time.perf_counter() - start:.0f} s)")
    meta["trained_steps"] = step
    meta["train_seconds"] = round(time.perf_counter() - start, 1)
    save_checkpoint({"model": model.state_dict(), "meta": meta}, out_path)
    print(f"synthetic detector: {step} steps in {meta['train_seconds']} s -> {out_path}")
    return out_path


def load_synthetic_detector(path: str | Path, top_k: int = DEFAULT_TOP_K, score_floor: float = DEFAULT_SCORE_FLOOR,
                            channels_last: bool = True) -> PersonDetector:
    """The detector saved by :func:`train_synthetic_detector`, wrapped for :meth:`PersonDetector.detect`."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta, state = ckpt["meta"], ckpt["model"]
    except FileNotFoundError:
        raise DetectorWeightsError(f"{path}: no synthetic detector here; train one with "
                                   f"train_synthetic_detector()") from None
    except Exception as err:
        raise DetectorWeightsError(f"{path}: not a synthetic detector checkpoint ({type(err).__name__}: "
                                   f"{str(err)[:200]})") from None
    try:
        model = build_synthetic_detector(meta["arch"], tuple(meta["image_size"]), meta["scale"])
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise DetectorWeightsError(f"{path}: weights do not fit the synthetic detector ({str(err)[:300]})") from None
    return PersonDetector(model=model, top_k=top_k, score_floor=score_floor, channels_last=channels_last)
