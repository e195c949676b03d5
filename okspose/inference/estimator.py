"""The Python API: :class:`PoseEstimator` poses pictures, arrays, batches and videos, and :class:`PoseResult`
holds what it found in one picture.

It is the Team OKS inference path of ``okspose test`` and ``predict``, not a copy of it: boxes (the
caller's, a detector's, or the whole picture) become person records, the :class:`~okspose.inference.poser.
Poser` poses them from the decoded pixels, and :func:`~okspose.inference.instances.select_instances`
rescores them and runs IoU- and OKS-NMS as ``test.*`` says. ``okspose predict`` poses through
:meth:`PoseEstimator.pose_arrays` and :meth:`PoseEstimator.track`.

Pictures in arrays are RGB ``uint8 [H, W, 3]`` (what the network and torchvision's detectors take);
pass ``color="bgr"`` for OpenCV's order. Boxes are ``xyxy`` in image pixels everywhere in this API.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from okspose.config import Config
from okspose.data.records import SkipReport, read_image
from okspose.data.video import VideoFrames, read_video
from okspose.distributed import use_cuda
from okspose.errors import OksposeError
from okspose.inference.boxes import CHUNK_IMAGES, BoxSource, make_detector
from okspose.inference.detector import PersonDetector
from okspose.inference.instances import Detections, coco_results, records_from_detections, select_instances
from okspose.inference.poser import Poser
from okspose.inference.tracking import Smoothing, Tracker
from okspose.keypoints import KeypointSchema
from okspose.run_config import command_config
from okspose.visualize import draw_poses, shown_persons

Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # RGB picture -> (boxes xyxy [N, 4], scores [N])
Image = str | os.PathLike | np.ndarray
Boxes = np.ndarray | Sequence[Sequence[float]]


@dataclass
class PoseResult:
    """The persons found in one picture, best first, after rescoring and NMS (as ``okspose test`` ranks them).

    N persons, K joints; every coordinate is in image pixels.
    """

    boxes: np.ndarray  # float [N, 4] xyxy, the posed boxes clipped to the picture
    box_scores: np.ndarray  # float [N] the detector's (or the caller's) box scores
    keypoints: np.ndarray  # float [N, K, 2] (x, y)
    keypoint_scores: np.ndarray  # float [N, K] heatmap maxima, near 1 for a confident joint
    scores: np.ndarray  # float [N] instance scores
    image_size: tuple[int, int]  # (width, height) of the picture
    schema: KeypointSchema = field(repr=False)
    track_ids: np.ndarray | None = None  # int [N] identities across frames (track() only)
    draw_thresholds: tuple[float, float] = field(default=(0.3, 0.3), repr=False)  # (joint, instance) scores

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def keypoints_with_scores(self) -> np.ndarray:
        """float [N, K, 3] (x, y, joint score): the layout of COCO results and of the drawing."""
        return np.concatenate([self.keypoints, self.keypoint_scores[..., None]], axis=-1)

    @property
    def drawn(self) -> np.ndarray:
        """bool [N]: the persons :meth:`draw` shows (``draw_thresholds``; the others stay in the results)."""
        return shown_persons(self.keypoints_with_scores, self.scores, *self.draw_thresholds)

    @property
    def boxes_xywh(self) -> np.ndarray:
        return np.concatenate([self.boxes[:, :2], self.boxes[:, 2:] - self.boxes[:, :2]], axis=1)

    def to_coco(self, image_id: int, category_id: int = 1) -> list[dict]:
        """COCO keypoint results records (``image_id``, ``category_id``, ``keypoints``, ``score``, and
        ``track_id`` when tracked), the records ``okspose test`` writes and pycocotools scores."""
        records = coco_results(np.full(len(self), image_id), self.keypoints_with_scores, self.scores, category_id)
        if self.track_ids is not None:
            for record, track_id in zip(records, self.track_ids):
                record["track_id"] = int(track_id)
        return records

    def draw(self, image: Image, color: str = "rgb") -> np.ndarray:
        """The picture ``predict`` draws: skeletons, boxes and scores (each identity in its own colour when
        tracked), in ``image``'s colour order (a path is read as RGB)."""
        rgb = load_image(image, "image", color)
        kpt_thr, instance_thr = self.draw_thresholds
        drawn = draw_poses(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self.keypoints_with_scores, self.schema,
                           boxes=self.boxes_xywh, scores=self.scores, kpt_thr=kpt_thr, instance_thr=instance_thr,
                           track_ids=self.track_ids)
        return drawn if color == "bgr" else cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB)


def _check_color(color: str) -> None:
    if color not in ("rgb", "bgr"):
        raise OksposeError(f"color must be 'rgb' or 'bgr', got {color!r}")


def load_image(image: Image, name: str, color: str = "rgb") -> np.ndarray:
    """An RGB uint8 [H, W, 3] picture from a path (decoded by OpenCV) or an array in ``color`` order; anything
    else is an :class:`OksposeError` naming the argument ``name``."""
    _check_color(color)
    if isinstance(image, str | os.PathLike):
        if not Path(image).is_file():
            raise OksposeError(f"{name}: picture not found: {image}")
        return read_image(str(image))
    if not isinstance(image, np.ndarray):
        raise OksposeError(f"{name}: expected a path or an H x W x 3 uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.shape[0] or not image.shape[1]:
        raise OksposeError(f"{name}: expected an H x W x 3 uint8 array, got {image.dtype} {list(image.shape)}")
    return np.ascontiguousarray(image[..., ::-1] if color == "bgr" else image)


def as_detections(boxes: Boxes, scores: Sequence[float] | np.ndarray | None, name: str) -> Detections:
    """Caller's ``xyxy`` boxes [N, 4] and scores [N] (default 1) as checked ``xywh`` detections."""
    try:
        xyxy = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise OksposeError(f"{name}: expected numbers [N, 4] (x0, y0, x1, y1)") from None
    if xyxy.size == 0:
        xyxy = xyxy.reshape(0, 4)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise OksposeError(f"{name}: expected boxes [N, 4] (x0, y0, x1, y1), got shape {list(xyxy.shape)}")
    if not np.isfinite(xyxy).all() or (xyxy[:, 2:] < xyxy[:, :2]).any():
        raise OksposeError(f"{name}: every box needs finite x0 <= x1 and y0 <= y1")
    try:
        score = np.ones(len(xyxy)) if scores is None else np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise OksposeError(f"{name} scores: expected {len(xyxy)} numbers") from None
    if score.shape != (len(xyxy),) or not np.isfinite(score).all():
        raise OksposeError(f"{name} scores: expected {len(xyxy)} finite numbers, got shape {list(score.shape)}")
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1), score


def _clip_xyxy(boxes_xywh: np.ndarray, width: int, height: int) -> np.ndarray:
    xyxy = np.concatenate([boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]], axis=1).reshape(-1, 4)
    return np.clip(xyxy, 0, [width, height, width, height])


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    return torch.device("cuda", 0) if use_cuda(device) else torch.device("cpu")


def chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class PoseEstimator:
    """A pose network with its detector, ready to pose pictures: ``PoseEstimator.from_checkpoint(path)(image)``.

    Args:
        poser: the prepared network.
        cfg: the run configuration (``test.*``: rescoring, NMS, drawing thresholds).
        detector: where boxes come from when the caller gives none: a torchvision (or the demo's) detector,
            a callable RGB picture -> (boxes xyxy [N, 4], scores [N]), or None for the whole picture.
    """

    def __init__(self, poser: Poser, cfg: Config, detector: PersonDetector | Detect | None = None) -> None:
        self.poser, self.cfg, self.detector = poser, cfg, detector
        self.schema = poser.schema
        self.sigmas = np.asarray(self.schema.sigmas)
        self.skipped = SkipReport()  # frames of track() that could not be decoded

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, detector: str | Detect | None = None,
                        detector_weights: str | os.PathLike | None = None, device: str | torch.device = "auto",
                        **settings: object) -> PoseEstimator:
        """Read the checkpoint once and prepare its network for posing.

        Args:
            path: a checkpoint written by ``okspose train`` (it carries its settings).
            detector: None (the caller's boxes, else the whole picture), a detector name (``"maskrcnn"``,
                ``"mobilenet"``, ``"synthetic"`` with ``detector_weights``, or any ``--detector`` of the
                command line), or a callable RGB array -> (boxes xyxy [N, 4], scores [N]).
            detector_weights: the detector's weights file (Mask R-CNN: torchvision's COCO weights by default).
            device: "auto" (CUDA when available), "cpu", "cuda" or a ``torch.device``.
            settings: ``test.*`` settings, e.g. ``flip_test=False, engine="onnxruntime"``; checked as the
                command line's ``test.key=value`` overrides, with the same one-line errors.
        """
        overrides = [f"test.{key}={json.dumps(value)}" for key, value in settings.items()]
        cfg, checkpoint = command_config(None, overrides, path)
        return cls.from_config(cfg, checkpoint, detector, detector_weights, device)

    @classmethod
    def from_config(cls, cfg: Config, checkpoint: object, detector: str | Detect | None = None,
                    detector_weights: str | os.PathLike | None = None,
                    device: str | torch.device = "auto") -> PoseEstimator:
        """:meth:`from_checkpoint` for a config and :class:`~okspose.checkpoints.Checkpoint` already read
        (``okspose predict``'s, whose overrides may touch any section)."""
        dev = _device(device)
        if detector_weights is not None and not isinstance(detector, str):
            raise OksposeError("detector_weights goes with a detector name (detector='maskrcnn', ...)")
        if isinstance(detector, str):
            if detector in ("gt", "detections"):
                raise OksposeError(f"detector {detector!r} is not a detector: pass the boxes to the call instead")
            detector = make_detector(BoxSource(detector, None if detector_weights is None else str(detector_weights)),
                                     cfg, dev)
        elif detector is not None and not callable(detector):
            raise OksposeError(f"detector: expected None, a detector name or a callable, got {type(detector).__name__}")
        return cls(Poser.from_checkpoint(cfg, checkpoint, dev), cfg, detector)

    def __call__(self, image: Image | Sequence[Image], boxes: Boxes | Sequence[Boxes | None] | None = None,
                 box_scores: Sequence | np.ndarray | None = None, color: str = "rgb") -> PoseResult | list[PoseResult]:
        """Pose the persons of a picture, or of a list of pictures posed as one batch.

        Args:
            image: a path, or an RGB ``uint8 [H, W, 3]`` array (BGR with ``color="bgr"``), or a list of them.
            boxes: the persons' ``xyxy`` boxes [N, 4] in image pixels (a list of them, or of None, for a list
                of pictures); None: the detector's boxes, or the whole picture without a detector.
            box_scores: [N] scores of ``boxes`` (default 1), a list of them for a list.
            color: "rgb" or "bgr", the order of array pictures.

        Returns:
            A :class:`PoseResult`, or a list of them for a list of pictures.
        """
        single = not isinstance(image, list | tuple)
        images = [image] if single else list(image)
        per_boxes = [boxes] if single else self._per_picture(boxes, len(images), "boxes")
        per_scores = [box_scores] if single else self._per_picture(box_scores, len(images), "box_scores")
        where = ["image"] if single else [f"image[{i}]" for i in range(len(images))]
        out: list[PoseResult] = []
        for part in chunks(range(len(images)), CHUNK_IMAGES):  # a long list of paths is never all decoded
            pictures = [load_image(images[i], where[i], color) for i in part]
            dets = [None if per_boxes[i] is None else as_detections(per_boxes[i], per_scores[i], f"boxes of {where[i]}")
                    for i in part]
            out += self.pose_arrays(pictures, dets)
        return out[0] if single else out

    @staticmethod
    def _per_picture(value: Sequence | None, n: int, name: str) -> list:
        if value is None:
            return [None] * n
        if not isinstance(value, list | tuple) or len(value) != n:
            raise OksposeError(f"{name}: for a list of {n} pictures, give a list of {n} (an entry may be None)")
        return list(value)

    def detect(self, pictures: Sequence[np.ndarray]) -> list[Detections]:
        """The detector's boxes (``xywh``, best first) of RGB pictures, or the whole picture without one."""
        if self.detector is None:
            return [(np.array([[0.0, 0.0, p.shape[1], p.shape[0]]]), np.ones(1)) for p in pictures]
        if isinstance(self.detector, PersonDetector):
            return self.detector.detect(list(pictures))
        out = []
        for picture in pictures:
            found = self.detector(picture)
            if not (isinstance(found, tuple | list) and len(found) == 2):
                raise OksposeError("detector: a callable detector must return (boxes xyxy [N, 4], scores [N])")
            out.append(as_detections(found[0], found[1], "detector boxes"))
        return out

    def pose_arrays(self, pictures: Sequence[np.ndarray], boxes: Sequence[Detections | None] | None = None
                    ) -> list[PoseResult]:
        """The one posing path: RGB pictures and, per picture, ``xywh`` detections or None (the detector's, or
        the whole picture), posed as one batch, rescored and suppressed as ``test.*`` says."""
        if not pictures:
            return []
        boxes = list(boxes) if boxes is not None else [None] * len(pictures)
        missing = [i for i, b in enumerate(boxes) if b is None]
        for i, found in zip(missing, self.detect([pictures[i] for i in missing]) if missing else []):
            boxes[i] = found
        names = {i: f"picture {i}" for i in range(len(pictures))}
        records = records_from_detections(names, dict(enumerate(boxes)), self.schema.num_joints)
        posed = self.poser.pose_decoded(dict(enumerate(pictures)), records)
        index, scores = select_instances(posed, self.cfg.test, self.sigmas)
        owner = posed.records.image_ids[index]
        t = self.cfg.test
        out = []
        for i, picture in enumerate(pictures):
            rows = np.flatnonzero(owner == i)
            rows = rows[np.argsort(-scores[rows], kind="stable")]
            kept = index[rows]
            height, width = picture.shape[:2]
            out.append(PoseResult(_clip_xyxy(posed.records.boxes[kept], width, height), posed.box_scores[kept],
                                  posed.keypoints[kept, :, :2], posed.keypoints[kept, :, 2], scores[rows],
                                  (width, height), self.schema, draw_thresholds=(t.vis_kpt_thr, t.vis_instance_thr)))
        return out

    def track(self, frames: str | os.PathLike | Iterable[np.ndarray | None],
              boxes: Iterable[Boxes | None] | None = None, max_age: int = 30, smooth: bool = False,
              min_cutoff: float = 1.0, beta: float = 0.007, fps: float | None = None, color: str | None = None,
              batch: int = 8) -> Iterator[PoseResult]:
        """Pose a video frame by frame and keep each person's identity (``track_ids``) across frames.

        Identities come from greedy matching on OKS of the poses and IoU of the boxes
        (:class:`~okspose.inference.tracking.Tracker`); a track unmatched for more than ``max_age`` frames
        ends, and a new person gets a new id. Frames are streamed ``batch`` at a time (posed as one batch),
        so memory stays bounded on a long video.

        Args:
            frames: a video file (read with OpenCV, BGR), :func:`~okspose.data.video.read_video`'s frames,
                or any iterable of pictures (RGB arrays, or ``color``); a None entry (a frame the caller
                could not decode) is counted in :attr:`skipped` and yields nothing, as does a frame the
                video's decoder fails on.
            boxes: per frame, ``xyxy`` boxes [N, 4] or None (the detector's, or the whole picture).
            max_age: frames a track survives unmatched.
            smooth: One-Euro smoothing of each identity's joints (off by default).
            min_cutoff: the filter's cut-off at rest in Hz (lower: smoother, more lag).
            beta: how fast the cut-off rises with a joint's speed (higher: less lag on fast motion).
            fps: the frame rate the filter's Hz refer to: the video's, else 30.
            color: "rgb" or "bgr" for array frames (default "bgr" for a video file, else "rgb").
            batch: frames posed together.

        Yields:
            One :class:`PoseResult` per decoded frame, with ``track_ids``.
        """
        if batch < 1 or max_age < 0 or min_cutoff <= 0 or beta < 0:
            raise OksposeError(f"track: need batch >= 1, max_age >= 0, min_cutoff > 0 and beta >= 0, got batch="
                               f"{batch} max_age={max_age} min_cutoff={min_cutoff} beta={beta}")
        if isinstance(frames, str | os.PathLike):
            frames = read_video(frames)
        if isinstance(frames, VideoFrames):
            fps, color = fps or frames.fps, color or "bgr"
        tracker = Tracker(self.sigmas, max_age, kpt_thr=self.cfg.test.kpt_score_thr, fps=fps or 30.0,
                          smoothing=Smoothing(min_cutoff, beta) if smooth else None)
        pairs = zip(frames, boxes) if boxes is not None else ((f, None) for f in frames)
        for part in chunks(enumerate(pairs), batch):
            decoded = [(load_image(f, f"frame {i}", color or "rgb"), b, i) for i, (f, b) in part if f is not None]
            for _ in range(len(part) - len(decoded)):
                self.skipped.add("unreadable frame", "a frame given as None")
            dets = [None if b is None else as_detections(b, None, f"boxes of frame {i}") for _, b, i in decoded]
            for result in self.pose_arrays([f for f, _, _ in decoded], dets):
                ids, keypoints = tracker.update(result.boxes, result.keypoints_with_scores)
                result.track_ids, result.keypoints = ids, keypoints[..., :2]
                yield result
        if isinstance(frames, VideoFrames) and frames.skipped:
            self.skipped.reasons["unreadable frame"] += frames.skipped
            self.skipped.examples.append(f"{frames.path}: {frames.skipped} frame(s) the decoder failed on")
