"""Person detection, the first stage of top-down pose estimation.

Three sources of person boxes share one output format, ``{image_id: (boxes_xywh [n, 4], scores [n])}``
(per-image lists for :meth:`PersonDetector.detect`), sorted by score and capped at ``top_k``:

* :func:`load_detections` reads a COCO results-format file (what published systems ship; Team OKS
  used FPN + Mask R-CNN boxes with 56 person AP).
* :class:`PersonDetector` runs torchvision's Mask R-CNN ResNet-50 FPN with COCO weights, or any
  torchvision detection model it is handed.
* :func:`train_synthetic_detector` fits a small detector to the synthetic people scenes on CPU in a
  few minutes, because no weights can be downloaded offline and the demo still needs boxes.

Both defaults, ``top_k=20`` and ``score_floor=0.0``, keep low-scoring boxes on purpose: the COCO
keypoint metric ranks poses by score, so an extra low-score box costs little precision but can add
a person that would otherwise be missed (the sample AP_H 56 file goes down to 0.003). Raise
``score_floor`` to save pose-network time instead. A model's own post-processing still drops boxes
under ``MIN_CANDIDATE_SCORE`` (0.001).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torch import nn
from torchvision.models.detection import (
    FCOS,
    FasterRCNN,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import MultiScaleRoIAlign

from okspose.data.coco import DataError, SkipReport, read_annotation_file, read_image, read_json
from okspose.errors import OksposeError
from okspose.evaluation import load_coco
from okspose.fileio import save_checkpoint

DEFAULT_TOP_K = 20
DEFAULT_SCORE_FLOOR = 0.0
PERSON_LABEL = 1  # COCO's person category id, and the first foreground class of a 2-class detector
# Scores a model's own post-processing drops whatever score_floor says: with a floor of 0, Mask R-CNN
# runs NMS over every proposal x 90 classes (~90k boxes), which cost 3 s of CPU per image in our
# measurement, for boxes nobody would pose.
MIN_CANDIDATE_SCORE = 1e-3
COCO_WEIGHTS = MaskRCNN_ResNet50_FPN_Weights.COCO_V1

Detections = tuple[np.ndarray, np.ndarray]  # (boxes xywh [n, 4] float64, scores [n] float64)


class DetectorWeightsError(OksposeError):
    """Detector weights that are missing, unreadable or do not fit the model; says how to get them."""


# ------------------------------------------------------------------------------- detection files


def _bad(path: Path, index: int, why: str) -> DataError:
    return DataError(f"{path}: detection #{index}: {why}")


def _finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def load_detections(
    path: str | Path,
    image_ids: set[int] | None = None,
    score_floor: float = DEFAULT_SCORE_FLOOR,
    top_k: int = DEFAULT_TOP_K,
    category_id: int = PERSON_LABEL,
    report: SkipReport | None = None,
) -> dict[int, Detections]:
    """Person boxes from a COCO results-format file, ``{image_id: (boxes_xywh, scores)}``.

    A record that is not what the format promises (not an object, a missing key, a bbox that is not
    four finite numbers, a non-finite score) raises :class:`DataError` (a ``ValueError``) naming the file
    and the record index: such a file was not written by a detector and should not be half-used.
    Boxes with zero or negative width or height are dropped and counted in ``report``, because real
    detectors do emit them (e.g. after clipping to the image) and they hold no person to pose.
    Other categories are ignored. Images without detections have no entry; ``[]`` gives ``{}``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    path = Path(path)
    data = read_json(path, "detections")
    if not isinstance(data, list):
        raise DataError(f"{path}: not a COCO results file (expected a JSON list of detections, "
                        f"got {type(data).__name__})")
    report = report if report is not None else SkipReport()
    per_image: dict[int, list[tuple[float, list[float]]]] = {}
    for i, det in enumerate(data):
        if not isinstance(det, dict):
            raise _bad(path, i, f"not an object: {str(det)[:80]}")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing:
            raise _bad(path, i, f"missing key(s) {missing}")
        image_id, box, score = det["image_id"], det["bbox"], det["score"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise _bad(path, i, f"image_id must be an integer, got {image_id!r}")
        if not isinstance(box, list) or len(box) != 4 or not all(_finite_number(v) for v in box):
            raise _bad(path, i, f"bbox must be 4 finite numbers [x, y, w, h], got {str(box)[:80]}")
        if not _finite_number(score):
            raise _bad(path, i, f"score must be a finite number, got {score!r}")
        if det["category_id"] != category_id or (image_ids is not None and image_id not in image_ids):
            continue
        if box[2] <= 0 or box[3] <= 0:
            report.add("empty box", f"{path}: detection #{i} (image {image_id}) bbox {box}")
            continue
        if score < score_floor:
            continue
        per_image.setdefault(image_id, []).append((float(score), [float(v) for v in box]))
    out: dict[int, Detections] = {}
    for image_id, dets in per_image.items():
        scores = np.array([s for s, _ in dets])
        order = np.argsort(-scores, kind="stable")[:top_k]  # stable: ties keep file order
        out[image_id] = (np.array([dets[j][1] for j in order]).reshape(-1, 4), scores[order])
    return out


# ------------------------------------------------------------------------------------ the detector


def _coco_weights_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(COCO_WEIGHTS.url).name


def _how_to_get_weights() -> str:
    file = _coco_weights_file()
    return (f"download {COCO_WEIGHTS.url} and put it at {file} (torch hub cache, under $TORCH_HOME), "
            f"or pass its path with --detector-weights PATH, or skip the detector with --detections FILE "
            f"(COCO results-format person boxes)")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict or a ``{"model": state_dict, ...}`` checkpoint, tensors only."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DetectorWeightsError(f"{path}: detector weights not found; {_how_to_get_weights()}") from None
    except Exception as err:  # torch raises many types for a corrupt or non-weights file
        raise DetectorWeightsError(f"{path}: cannot read detector weights ({type(err).__name__}: "
                                   f"{str(err)[:200]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DetectorWeightsError(f"{path}: not a state dict (nor a checkpoint with a 'model' state dict)")
    return obj


def _coco_state_dict(allow_download: bool) -> dict[str, torch.Tensor]:
    """torchvision's COCO Mask R-CNN weights from the hub cache, else downloaded if allowed."""
    file = _coco_weights_file()
    if file.is_file():
        return _read_state_dict(file)
    if allow_download:
        try:
            return torch.hub.load_state_dict_from_url(COCO_WEIGHTS.url, progress=False, check_hash=True,
                                                      map_location="cpu", weights_only=True)
        except Exception as err:  # URLError, timeouts, hash mismatch: all mean "no weights"
            raise DetectorWeightsError(
                f"no COCO detector weights: {file} is missing and downloading failed "
                f"({type(err).__name__}: {str(err)[:120]}); {_how_to_get_weights()}") from None
    raise DetectorWeightsError(f"no COCO detector weights: {file} is missing (downloads are off); "
                               f"{_how_to_get_weights()}")


def _set_postprocess(model: nn.Module, score_floor: float, per_image: int) -> None:
    """Push the score floor and a detection cap into a torchvision model's own post-processing.

    Two-stage models keep them on ``roi_heads``; one-stage ones (FCOS, RetinaNet, SSD) on the model.
    """
    for owner in (getattr(model, "roi_heads", None), model):
        if owner is not None and hasattr(owner, "score_thresh") and hasattr(owner, "detections_per_img"):
            owner.score_thresh = score_floor
            owner.detections_per_img = per_image
            return


class PersonDetector(nn.Module):
    """Person boxes from a torchvision detection model (by default COCO Mask R-CNN ResNet-50 FPN).

    Weights for the default model come from ``weights_path`` (a state dict or a ``{"model": ...}``
    checkpoint), else from torchvision's COCO weights in the torch hub cache, else from a download when
    ``allow_download``; otherwise :class:`DetectorWeightsError` says how to get them. Pass ``model`` to
    wrap any torchvision detection model (e.g. :func:`load_synthetic_detector`'s) instead; it must output
    ``{"boxes" xyxy, "labels", "scores"}`` per image with persons as ``person_label``.
    """

    def __init__(
        self,
        weights_path: str | Path | None = None,
        *,
        model: nn.Module | None = None,
        top_k: int = DEFAULT_TOP_K,
        score_floor: float = DEFAULT_SCORE_FLOOR,
        allow_download: bool = True,
        person_label: int = PERSON_LABEL,
        batch_size: int = 2,
    ) -> None:
        super().__init__()
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be at least 1, got {top_k} and {batch_size}")
        if model is not None and weights_path is not None:
            raise ValueError("pass either model or weights_path, not both")
        self.top_k, self.score_floor = top_k, score_floor
        self.person_label, self.batch_size = person_label, batch_size
        # The model's cap counts every class, so on COCO it must be wider than top_k or persons in a
        # busy street scene get crowded out by cars; persons are cut to top_k afterwards.
        per_image = max(100, top_k)
        if model is None:
            state = _read_state_dict(Path(weights_path)) if weights_path is not None else \
                _coco_state_dict(allow_download)
            model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_detections_per_img=per_image,
                                          box_score_thresh=max(score_floor, MIN_CANDIDATE_SCORE))
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                where = weights_path or _coco_weights_file()
                raise DetectorWeightsError(f"{where}: weights do not fit Mask R-CNN ResNet-50 FPN "
                                           f"({str(err)[:300]})") from None
            # Only boxes are needed; pasting up to 100 full-image masks per picture is pure CPU cost.
            model.roi_heads.mask_roi_pool = model.roi_heads.mask_head = model.roi_heads.mask_predictor = None
        else:
            _set_postprocess(model, max(score_floor, MIN_CANDIDATE_SCORE), per_image)
        self.model = model.eval()

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Per image, the person boxes (xywh, float64 [n, 4]) and scores ([n]) with the best first.

        ``images`` are RGB uint8 arrays [H, W, 3] of any sizes; they go through the model in batches of
        ``batch_size``.
        """
        for i, img in enumerate(images):
            if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
                got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
                raise ValueError(f"image {i}: expected an RGB uint8 array [H, W, 3], got {got}")
        self.model.eval()  # torchvision detectors in train mode want targets and return losses
        device = next(self.model.parameters()).device
        out: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1).float().div_(255)
                     for img in images[start:start + self.batch_size]]
            for pred in self.model(batch):
                keep = (pred["labels"] == self.person_label) & (pred["scores"] >= self.score_floor)
                boxes = pred["boxes"][keep].double().cpu().numpy()
                scores = pred["scores"][keep].double().cpu().numpy()
                order = np.argsort(-scores, kind="stable")[: self.top_k]
                boxes, scores = boxes[order], scores[order]
                boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
                out.append((boxes.reshape(-1, 4), scores))
        return out


# --------------------------------------------------------------------- a detector for the synthetic data


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


def load_synthetic_detector(path: str | Path, top_k: int = DEFAULT_TOP_K,
                            score_floor: float = DEFAULT_SCORE_FLOOR) -> PersonDetector:
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
    return PersonDetector(model=model, top_k=top_k, score_floor=score_floor)


# ------------------------------------------------------------------------------------------ quality


def box_quality(detections: dict[int, Detections], ann_file: str | Path, iou: float = 0.5,
                verbose: bool = False) -> dict[str, float]:
    """Person box AP (COCOeval, iouType="bbox") and recall at ``iou`` of ``detections`` against GT.

    Recall matches each detection, best score first, to the unmatched non-crowd person it overlaps most,
    so one box cannot count for two people. Detections of images not in ``ann_file`` are ignored.
    """
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        gt = load_coco(ann_file)
        ids = set(gt.getImgIds())
        results = [{"image_id": int(i), "category_id": 1, "bbox": b.tolist(), "score": float(s)}
                   for i, (boxes, scores) in detections.items() if i in ids for b, s in zip(boxes, scores)]
        stats = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        if results:  # pycocotools cannot load an empty result list
            ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
            ev.params.catIds = [1]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}
    found = total = 0
    for image_id in ids:
        people = [a["bbox"] for a in gt.loadAnns(gt.getAnnIds(imgIds=image_id, catIds=[1], iscrowd=False))]
        total += len(people)
        boxes = detections.get(image_id, (np.zeros((0, 4)), np.zeros(0)))[0]
        if not people or not len(boxes):
            continue
        overlap = mask_utils.iou(boxes.tolist(), people, [0] * len(people))  # [dets, people]
        free = np.ones(len(people), bool)
        for row in overlap:
            j = int(np.argmax(np.where(free, row, -1)))
            if free[j] and row[j] >= iou:
                free[j] = False
                found += 1
    stats[f"recall{round(iou * 100)}"] = found / total if total else 0.0
    return stats
