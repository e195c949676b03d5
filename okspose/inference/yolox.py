"""Person boxes from a YOLOX ONNX export (Megvii's layout, nano to x) run by ONNX Runtime: a real COCO
detector that runs offline on a CPU, where torchvision's COCO weights are not at hand.

The graph takes one letterboxed picture ``[1, 3, S_h, S_w]`` (float32 BGR pixels 0-255, not normalised,
resized by ``r = min(S_h / H, S_w / W)`` into the top-left corner of a canvas of 114) and returns
``[1, N, 5 + classes]`` over the grids of strides 8, 16 and 32 in that order: per cell the box centre
offset and log size in strides, objectness and class probabilities. The input size is read from the graph,
so any export of this layout works. Boxes come out like :class:`~okspose.inference.detector.PersonDetector`'s:
``(boxes_xywh [n, 4], scores [n])`` per picture, best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import nms

from okspose.inference.detections import DEFAULT_SCORE_FLOOR, DEFAULT_TOP_K
from okspose.inference.detector import MIN_CANDIDATE_SCORE, DetectorWeightsError
from okspose.inference.instances import Detections
from okspose.inference.onnx_engine import OnnxRuntimeNet

STRIDES = (8, 16, 32)
PAD_VALUE = 114  # YOLOX's letterbox fill
NMS_IOU = 0.45  # YOLOX's demo threshold
PERSON_CLASS = 0  # person is the first of YOLOX's 80 COCO classes


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """YOLOX's input for an RGB uint8 picture: BGR float32 [1, 3, h, w] with the picture resized by ``r``
    into the top-left corner of a canvas of 114; returns it and ``r``."""
    h, w = size
    r = min(h / image.shape[0], w / image.shape[1])
    resized = cv2.resize(image[..., ::-1], (int(image.shape[1] * r), int(image.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR)
    canvas = np.full((h, w, 3), PAD_VALUE, np.float32)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), r


def grid_cells(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each output row's grid cell (x, y) [N, 2] and stride [N, 1], strides 8, 16, 32 in that order."""
    cells, strides = [], []
    for s in STRIDES:
        ys, xs = np.mgrid[: size[0] // s, : size[1] // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full((xs.size, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(out: np.ndarray, size: tuple[int, int], r: float, image_hw: tuple[int, int], score_floor: float,
           top_k: int, nms_iou: float = NMS_IOU) -> Detections:
    """Person boxes (xywh in the picture, clipped to it) and scores from one picture's raw output [N, 85]:
    score = objectness x person probability, candidates under ``score_floor`` dropped, NMS, best ``top_k``."""
    cells, strides = grid_cells(size)
    if len(cells) != len(out):
        raise ValueError(f"YOLOX output has {len(out)} rows, its {size[0]}x{size[1]} grids have {len(cells)}")
    scores = out[:, 4] * out[:, 5 + PERSON_CLASS]
    keep = scores >= max(score_floor, MIN_CANDIDATE_SCORE)
    centre = (out[keep, :2] + cells[keep]) * strides[keep]
    half = np.exp(out[keep, 2:4]) * strides[keep] / 2
    boxes = np.concatenate([centre - half, centre + half], 1).astype(np.float64) / r
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, image_hw[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, image_hw[0])
    scores = scores[keep].astype(np.float64)
    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), nms_iou).numpy()[:top_k]  # best first
    boxes, scores = boxes[kept], scores[kept]
    boxes[:, 2:] -= boxes[:, :2]
    return boxes.reshape(-1, 4), scores


class YoloxDetector:
    """A YOLOX ONNX export as a person detector (``--detector yolox --detector-weights FILE``)."""

    def __init__(self, weights_path: str | Path | None, *, top_k: int = DEFAULT_TOP_K,
                 score_floor: float = DEFAULT_SCORE_FLOOR, nms_iou: float = NMS_IOU) -> None:
        if not weights_path:
            raise DetectorWeightsError("--detector yolox needs --detector-weights FILE (a YOLOX ONNX export, "
                                       "e.g. ../shared/models/yolox_nano.onnx)")
        if not Path(weights_path).is_file():
            raise DetectorWeightsError(f"{weights_path}: YOLOX ONNX file not found")
        self.session = OnnxRuntimeNet(weights_path).session
        (graph_input,), outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = graph_input.shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]) or len(outputs) != 1 \
                or len(outputs[0].shape) != 3 or outputs[0].shape[-1] != 85:
            raise DetectorWeightsError(f"{weights_path}: not a YOLOX export of 80 COCO classes (input {shape}, "
                                       f"outputs {[o.shape for o in outputs]}; want [1, 3, H, W] -> [1, N, 85])")
        self.input_name, self.size = graph_input.name, (shape[2], shape[3])
        self.top_k, self.score_floor, self.nms_iou = top_k, score_floor, nms_iou

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Per RGB uint8 picture [H, W, 3], the person boxes (xywh, float64 [n, 4]) and scores, best first."""
        out = []
        for image in images:
            x, r = letterbox(image, self.size)
            (raw,) = self.session.run(None, {self.input_name: x})
            out.append(decode(raw[0], self.size, r, image.shape[:2], self.score_floor, self.top_k, self.nms_iou))
        return out
