"""Person boxes from a torchvision detector: by default Team OKS's Mask R-CNN ResNet-50 FPN with COCO
weights, or any torchvision detection model it is handed (e.g. the demo's synthetic-scenes detector).

Boxes come out as ``(boxes_xywh [n, 4], scores [n])`` per picture, best first, capped at ``top_k``; the
same format as a detections file (:mod:`okspose.inference.detections`). The model's own post-processing drops boxes
under ``MIN_CANDIDATE_SCORE`` (0.001) whatever ``score_floor`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    fasterrcnn_mobilenet_v3_large_fpn,
    maskrcnn_resnet50_fpn,
)

from okspose.errors import OksposeError
from okspose.inference.detections import DEFAULT_SCORE_FLOOR, DEFAULT_TOP_K
from okspose.inference.instances import Detections
from okspose.inference.runtime import autocast

PERSON_LABEL = 1  # COCO's person category id, and the first foreground class of a 2-class detector
# Scores a model's own post-processing drops whatever score_floor says: with a floor of 0, Mask R-CNN
# runs NMS over every proposal x 90 classes (~90k boxes), seconds of CPU per image (docs/benchmarks.md) for
# boxes nobody would pose.
MIN_CANDIDATE_SCORE = 1e-3
COCO_WEIGHTS = MaskRCNN_ResNet50_FPN_Weights.COCO_V1
# The detectors --detector names, with their torchvision builders and COCO weights: Team OKS's Mask R-CNN
# (run without its mask branch), and a Faster R-CNN on MobileNetV3 for CPUs (box AP 32.8 against 37.9
# by torchvision's tables, at about a tenth of the compute).
ARCHS = {
    "maskrcnn": ("Mask R-CNN ResNet-50 FPN", maskrcnn_resnet50_fpn, COCO_WEIGHTS),
    "mobilenet": ("Faster R-CNN MobileNetV3-Large FPN", fasterrcnn_mobilenet_v3_large_fpn,
                  FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1),
}
COCO_MIN_SIZE, COCO_MAX_SIZE = 800, 1333  # torchvision's (and Detectron's) COCO input sizes


class DetectorWeightsError(OksposeError):
    """Detector weights that are missing, unreadable or do not fit the model; says how to get them."""


def _coco_weights_file(weights: WeightsEnum = COCO_WEIGHTS) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _how_to_get_weights(weights: WeightsEnum = COCO_WEIGHTS) -> str:
    file = _coco_weights_file(weights)
    return (f"download {weights.url} and put it at {file} (torch hub cache, under $TORCH_HOME), "
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


def _coco_state_dict(allow_download: bool, weights: WeightsEnum = COCO_WEIGHTS) -> dict[str, torch.Tensor]:
    """torchvision's COCO Mask R-CNN weights from the hub cache, else downloaded if allowed."""
    file = _coco_weights_file(weights)
    if file.is_file():
        return _read_state_dict(file)
    if allow_download:
        try:
            return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True,
                                                      map_location="cpu", weights_only=True)
        except Exception as err:  # URLError, timeouts, hash mismatch: all mean "no weights"
            raise DetectorWeightsError(
                f"no COCO detector weights: {file} is missing and downloading failed "
                f"({type(err).__name__}: {str(err)[:120]}); {_how_to_get_weights(weights)}") from None
    raise DetectorWeightsError(f"no COCO detector weights: {file} is missing (downloads are off); "
                               f"{_how_to_get_weights(weights)}")


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

    ``arch`` picks a COCO detector of :data:`ARCHS`; its weights come from ``weights_path`` (a state dict
    or a ``{"model": ...}`` checkpoint), else from torchvision's COCO weights in the torch hub cache, else
    from a download when ``allow_download``; otherwise :class:`DetectorWeightsError` says how to get them.
    Pass ``model`` to wrap any torchvision detection model (e.g. :func:`load_synthetic_detector`'s)
    instead; it must output ``{"boxes" xyxy, "labels", "scores"}`` per image with persons as ``person_label``.

    Speed without other boxes: the mask branch is dropped (only boxes are used), convolutions run in
    channels_last unless ``channels_last`` is False (``test.fast=false``: the detector as torchvision builds
    it), and pictures go through in batches of ``batch_size``. ``min_size`` is the shorter side
    pictures are resized to (COCO's usual 800; the longer side is capped at 1333 / 800 of it): smaller is
    faster and finds fewer small people. ``amp_dtype`` runs the network under autocast (bf16 on CPUs with
    native bf16): faster, and boxes move by fractions of a pixel, so it is a choice (``test.det_amp``).
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
        arch: str = "maskrcnn",
        min_size: int = COCO_MIN_SIZE,
        amp_dtype: torch.dtype | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be at least 1, got {top_k} and {batch_size}")
        if model is not None and weights_path is not None:
            raise ValueError("pass either model or weights_path, not both")
        self.top_k, self.score_floor = top_k, score_floor
        self.person_label, self.batch_size, self.amp_dtype = person_label, batch_size, amp_dtype
        # The model's cap counts every class, so on COCO it must be wider than top_k or persons in a
        # busy street scene get crowded out by cars; persons are cut to top_k afterwards.
        per_image = max(100, top_k)
        if model is None:
            if arch not in ARCHS:
                raise OksposeError(f"unknown detector {arch!r}; known: {', '.join(ARCHS)}")
            name, build, coco = ARCHS[arch]
            state = _read_state_dict(Path(weights_path)) if weights_path is not None else \
                _coco_state_dict(allow_download, coco)
            model = build(weights=None, weights_backbone=None, box_detections_per_img=per_image,
                          box_score_thresh=max(score_floor, MIN_CANDIDATE_SCORE), min_size=min_size,
                          max_size=round(min_size * COCO_MAX_SIZE / COCO_MIN_SIZE))
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                where = weights_path or _coco_weights_file(coco)
                raise DetectorWeightsError(f"{where}: weights do not fit {name} ({str(err)[:300]})") from None
            # Only boxes are needed; pasting up to 100 full-image masks per picture is pure CPU cost
            # (torchvision's RoIHeads skip the mask branch when mask_roi_pool is None).
            model.roi_heads.mask_roi_pool = model.roi_heads.mask_head = model.roi_heads.mask_predictor = None
        else:
            _set_postprocess(model, max(score_floor, MIN_CANDIDATE_SCORE), per_image)
        self.model = model.eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

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
            with autocast(device, self.amp_dtype):
                preds = self.model(batch)
            for pred in preds:
                keep = (pred["labels"] == self.person_label) & (pred["scores"] >= self.score_floor)
                boxes = pred["boxes"][keep].double().cpu().numpy()  # autocast may leave them in bf16
                scores = pred["scores"][keep].double().cpu().numpy()
                order = np.argsort(-scores, kind="stable")[: self.top_k]
                boxes, scores = boxes[order], scores[order]
                boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
                out.append((boxes.reshape(-1, 4), scores))
        return out


