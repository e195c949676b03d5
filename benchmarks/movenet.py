"""MoveNet SinglePose Lightning (Google's int8 COCO-17 pose network, ../shared/models) as a peer that poses
okspose's person records, so its poses go through okspose's own scoring path (rescoring, NMS, pycocotools)
beside okspose's networks: each box is cropped as a square of side max(w, h) around its centre (zero
outside the picture), resized to the network's input, posed, and the joints mapped back to the picture.

Needs ``ai-edge-litert`` (``pip install 'okspose[bench]'``), never a runtime dependency of okspose.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from okspose.data.records import PersonRecords, read_image
from okspose.inference.instances import PosedInstances
from okspose.keypoints import get_schema

MOVENET = Path(__file__).resolve().parents[2] / "shared" / "models" / "movenet_single_pose_lightning_ptq.tflite"


def square_crop(image: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The square of side max(w, h) around the box centre, zero-padded outside the picture, resized to
    ``size``; returns it, its top-left corner in the picture and its side."""
    x, y, w, h = box
    side = max(w, h, 1.0)
    corner = np.array([x + w / 2 - side / 2, y + h / 2 - side / 2])
    scale = size / side
    affine = np.array([[scale, 0, -corner[0] * scale], [0, scale, -corner[1] * scale]])
    crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return crop, corner, side


class MoveNetPoser:
    """Duck-types :class:`okspose.inference.poser.Poser` where scoring needs it (``schema``, ``pose``)."""

    def __init__(self, model: Path = MOVENET, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.net = Interpreter(str(model), num_threads=threads)
        self.net.allocate_tensors()
        self.input, self.output = self.net.get_input_details()[0], self.net.get_output_details()[0]
        self.size = int(self.input["shape"][1])
        self.schema = get_schema("coco17")

    def pose_crop(self, crop: np.ndarray) -> np.ndarray:
        """Joints [17, 3] (y, x normalised to the crop, score) of one RGB uint8 crop."""
        self.net.set_tensor(self.input["index"], crop[None].astype(self.input["dtype"]))
        self.net.invoke()
        return self.net.get_tensor(self.output["index"])[0, 0]

    def pose(self, records: PersonRecords, progress: bool = False) -> PosedInstances:
        """Every record's box posed; keypoints in picture pixels with MoveNet's joint scores."""
        keypoints, areas, pictures = np.zeros((len(records), 17, 3)), np.zeros(len(records)), {}
        for i, (path, box) in enumerate(zip(records.image_paths, records.boxes)):
            if path not in pictures:
                pictures = {path: read_image(path)}  # records come grouped by picture
            crop, corner, side = square_crop(pictures[path], box, self.size)
            joints = self.pose_crop(crop)
            keypoints[i, :, 0] = corner[0] + joints[:, 1] * side
            keypoints[i, :, 1] = corner[1] + joints[:, 0] * side
            keypoints[i, :, 2] = joints[:, 2]
            areas[i] = side * side
        return PosedInstances(records, keypoints, areas)
