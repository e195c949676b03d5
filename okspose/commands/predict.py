"""``okspose predict``: pose every person in image files, folders of images and videos.

Inputs are image files, video files (.mp4 .avi .mov .mkv, decoded with OpenCV) and folders. A folder
contributes the image and video files directly inside it, in name order; it is not searched
recursively, because nested folders are more often other datasets, splits or earlier outputs than more of
the same input. An input that does not exist stops the run before any work; an image that fails to
decode is reported on stderr, counted and skipped.

Each picture is decoded once: the detector, the pose network and the drawing use the same pixels, and
video frames go from the decoder straight into the pose batch, a chunk of frames at a time.

Image ids: a still image whose file-name stem is a number gets that number as its id, because COCO
names its files that way (``000000000785.jpg`` is image 785) and that is how a ``--detections`` file is
matched to the files. Other images, a later file with an already used number, and every video frame get
fresh ids above the largest numbered one; a detections file gives them no boxes (with a warning).

Outputs, in the ``out`` folder (JSON written atomically, by rank 0 only under ``torchrun``):

* ``predictions.json``, COCO annotation format, loadable by pycocotools' ``COCO()`` (and usable as
  pseudo-labels). COCO ground truth only knows visibility flags, so a joint scoring at least
  ``test.kpt_score_thr`` and lying inside the image gets ``v = 2``; any other gets ``v = 0`` ("not
  labelled") with ``x = y = 0``, as in COCO, so that no training or evaluation code trusts a guessed
  joint (and COCO loaders, ours included, reject labelled joints outside the image). Its raw location
  stays in ``results.json``, and every joint's score is in the annotation's ``keypoint_scores``. ``bbox`` is the
  posed person box clipped to the image and ``area`` its box-only OKS scale, ``keypoints.box_oks_area`` (no
  segmentation exists), as the metric, mining and OKS-NMS would take it. Video frames are
  named ``<video stem>/<frame:06d>.jpg`` (the layout of extracted frames) with ``video`` and
  ``frame_index`` fields added.
* ``results.json``, the COCO keypoint results list (``[x, y, score] * K`` and the instance score) that
  ``okspose test`` writes, in the same order as the annotations of ``predictions.json``.
* ``vis/<stem>.jpg`` for every image and ``vis/<stem>_pose.mp4`` for every video (mp4v, the input's fps
  and size, every frame drawn).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from okspose.checkpoints import Checkpoint
from okspose.config import Config
from okspose.data.records import SkipReport, read_image
from okspose.data.remap import person_category
from okspose.distributed import DistInfo, cleanup, gather_lists, init_distributed, shard
from okspose.errors import DataError, OksposeError
from okspose.fileio import save_image, save_json
from okspose.inference.boxes import CHUNK_IMAGES, BoxSource, detect_records, file_detections, make_detector
from okspose.inference.detector import PersonDetector
from okspose.inference.instances import Detections, records_from_detections, results_for, select_instances
from okspose.inference.poser import Poser
from okspose.keypoints import KeypointSchema, box_oks_area
from okspose.progress import LogProgress
from okspose.progress import progress as progress_bar
from okspose.run_config import command_config
from okspose.visualize import draw_poses

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})
DEFAULT_FPS = 25.0  # for videos whose container does not say
@dataclass(frozen=True)
class InputItem:
    """One image or video to pose."""

    path: Path
    video: bool
    image_id: int = -1  # still images only; frames are numbered on rank 0 after posing

    @property
    def name(self) -> str:
        return self.path.name


def _numeric_stem(path: Path) -> int | None:
    return int(path.stem) if re.fullmatch(r"[0-9]+", path.stem) else None


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def collect_inputs(paths: Sequence[str | Path]) -> tuple[list[InputItem], list[str]]:
    """The images and videos to pose, with image ids, and warnings (empty folders, unnumbered names).

    Raises :class:`DataError` for a missing input and for a file that is neither an
    image nor a video, so a typo costs nothing but the message.
    """
    files: list[Path] = []
    warnings: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"input not found: {path}")
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _kind(p))
            if not inside:
                warnings.append(f"{path}: no image or video files directly in this folder")
            files.extend(inside)
        elif _kind(path):
            files.append(path)
        else:
            known = " ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            raise DataError(f"{path}: not an image or video file (known extensions: {known})")
    seen: set[Path] = set()
    unique = []
    for path in files:  # a file named twice (itself and through its folder) is posed once
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    if not unique:
        raise DataError("no images or videos to pose in " + ", ".join(str(p) for p in paths))
    numbered: dict[int, int] = {}  # image id -> index of the file that owns it
    for i, path in enumerate(unique):
        number = _numeric_stem(path) if _kind(path) == "image" else None
        if number is not None and number not in numbered:
            numbered[number] = i
    owner = {i: number for number, i in numbered.items()}
    next_id = max(numbered, default=0) + 1
    items = []
    for i, path in enumerate(unique):
        if _kind(path) == "video":
            items.append(InputItem(path, True))
        elif i in owner:
            items.append(InputItem(path, False, owner[i]))
        else:
            items.append(InputItem(path, False, next_id))
            next_id += 1
    return items, warnings


def numbered_ids(items: Sequence[InputItem]) -> set[int]:
    """Ids that came from a numeric file-name stem: the only ones a detections file can refer to."""
    return {it.image_id for it in items if not it.video and _numeric_stem(it.path) == it.image_id}


# ------------------------------------------------------------------------------------------ videos


def read_video(path: Path) -> tuple[float, int, Iterator[np.ndarray]]:
    """(fps, frame count as the container claims it, BGR frames); a video OpenCV cannot open raises."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{path}: OpenCV cannot open this video")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return fps, count, frames()


# ----------------------------------------------------------------------------------------- posing


@dataclass(frozen=True)
class ImageInfo:
    """Where one posed picture came from: input ``item``, ``frame`` index (-1 for a still image)."""

    item: int
    frame: int
    image_id: int
    file_name: str
    width: int
    height: int


@dataclass
class PosedImage:
    """One picture after rescoring and NMS, best person first; small enough to gather across ranks."""

    info: ImageInfo
    boxes: np.ndarray  # [n, 4] xywh, the posed boxes clipped to the image
    results: list[dict]  # COCO keypoint results, as pipeline.results_for writes them


def _clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).reshape(-1, 4)


class _Predictor:
    """Boxes -> poses -> rescoring and NMS -> pictures, a chunk of decoded pictures at a time.

    Each picture is decoded once: the detector, the pose network and the drawing all use those pixels.
    """

    def __init__(self, poser: Poser, cfg: Config, boxes: BoxSource | None, detections: dict[int, Detections],
                 detector: PersonDetector | None, vis_dir: Path | None, names: list[str]) -> None:
        self.poser, self.cfg, self.boxes = poser, cfg, boxes
        self.detections, self.detector = detections, detector
        self.vis_dir, self.names = vis_dir, names
        self.schema = poser.schema
        self.sigmas = np.asarray(self.schema.sigmas)
        self.report = SkipReport()
        self.pictures: list[Path] = []

    def skip(self, reason: str, err: Exception) -> None:
        self.report.add(reason, str(err))
        print(f"skipping {err}", file=sys.stderr)

    def pose_chunk(self, chunk: list[tuple[ImageInfo, np.ndarray]]) -> list[PosedImage]:
        """Pose decoded RGB pictures; chunk-local ids keep video frames apart."""
        if not chunk:
            return []
        images = {i: rgb for i, (_, rgb) in enumerate(chunk)}
        names = {i: info.file_name for i, (info, _) in enumerate(chunk)}
        num_joints = self.schema.num_joints
        if self.boxes is None:
            dets = {i: (np.array([[0.0, 0.0, info.width, info.height]]), np.ones(1))
                    for i, (info, _) in enumerate(chunk)}
            records = records_from_detections(names, dets, num_joints)
        elif self.boxes.kind == "detections":
            dets = {i: self.detections[info.image_id] for i, (info, _) in enumerate(chunk)
                    if info.frame < 0 and info.image_id in self.detections}
            records = records_from_detections(names, dets, num_joints)
        else:
            records = detect_records(self.detector, images, names, num_joints)
        posed = self.poser.pose_decoded(images, records)
        index, scores = select_instances(posed, self.cfg.test, self.sigmas)
        results = results_for(posed, index, scores)
        owner = posed.records.image_ids[index]
        out = []
        for i, (info, _) in enumerate(chunk):
            rows = np.flatnonzero(owner == i)
            rows = rows[np.argsort(-scores[rows], kind="stable")]
            boxes = _clip_boxes(posed.records.boxes[index[rows]], info.width, info.height)
            out.append(PosedImage(info, boxes, [results[r] for r in rows]))
        return out

    def _finish(self, chunk: list[tuple[ImageInfo, np.ndarray]], draw: Callable[[ImageInfo, np.ndarray], None],
                bar: tqdm | LogProgress) -> list[PosedImage]:
        """Pose a chunk, hand each drawn picture to ``draw`` when drawing, count it on the bar."""
        posed = self.pose_chunk(chunk)
        if self.vis_dir is not None:
            for (info, rgb), p in zip(chunk, posed):
                draw(info, _draw(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), p, self.schema, self.cfg.test.vis_kpt_thr,
                                 self.cfg.test.vis_instance_thr))
        bar.update(len(chunk))
        return posed

    def _write_picture(self, info: ImageInfo, drawn: np.ndarray) -> None:
        self.pictures.append(save_image(drawn, self.vis_dir / self.names[info.item], [cv2.IMWRITE_JPEG_QUALITY, 92]))

    def pose_images(self, items: list[tuple[int, InputItem]], bar: tqdm | LogProgress) -> list[PosedImage]:
        out: list[PosedImage] = []
        for part in _chunks(items, CHUNK_IMAGES):
            chunk: list[tuple[ImageInfo, np.ndarray]] = []
            for index, item in part:
                try:
                    rgb = read_image(str(item.path))
                except DataError as err:
                    self.skip("unreadable image", err)
                    bar.update(1)
                    continue
                chunk.append((ImageInfo(index, -1, item.image_id, item.name, rgb.shape[1], rgb.shape[0]), rgb))
            out += self._finish(chunk, self._write_picture, bar)
        return out

    def pose_video(self, index: int, item: InputItem, bar: tqdm | LogProgress) -> list[PosedImage]:
        """Every frame, straight from the decoder into the pose batch, and (when drawing) out to
        ``vis/<stem>_pose.mp4`` with the input's fps and size."""
        try:
            fps, count, frames = read_video(item.path)
        except DataError as err:
            self.skip("unreadable video", err)
            return []
        bar.total = (bar.total or 0) + count
        bar.refresh()
        video = _VideoOut(self.vis_dir / self.names[index], fps) if self.vis_dir is not None else None
        out: list[PosedImage] = []
        for part in _chunks(enumerate(frames), CHUNK_IMAGES):
            chunk = [(ImageInfo(index, i, -1, f"{item.path.stem}/{i:06d}.jpg", frame.shape[1], frame.shape[0]),
                      cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)) for i, frame in part]
            out += self._finish(chunk, lambda _, drawn: video.write(drawn), bar)
        if video is not None and (target := video.close()) is not None:
            self.pictures.append(target)
        if not out:
            self.skip("unreadable video", DataError(f"{item.path}: no frame could be decoded"))
        return out


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


# ---------------------------------------------------------------------------------------- writing


@dataclass
class PredictSummary:
    """What a run did, for the closing message."""

    images: int
    frames: int
    persons: int
    skipped: SkipReport
    predictions: Path
    results: Path
    pictures: list[Path]


def coco_predictions(posed: list[PosedImage], items: Sequence[InputItem], schema: KeypointSchema,
                     kpt_thr: float) -> tuple[dict, list[dict]]:
    """(``predictions.json`` dict, ``results.json`` list) of pictures already sorted and numbered."""
    images, annotations, results = [], [], []
    for p in posed:
        info = p.info
        image = {"id": info.image_id, "file_name": info.file_name, "width": info.width, "height": info.height}
        if info.frame >= 0:
            image.update(video=str(items[info.item].path), frame_index=info.frame)
        else:
            image["path"] = str(items[info.item].path)
        images.append(image)
        for box, res in zip(p.boxes, p.results):
            res["image_id"] = info.image_id
            results.append(res)
            kp = np.asarray(res["keypoints"], dtype=np.float64).reshape(-1, 3)
            inside = (kp[:, 0] >= 0) & (kp[:, 0] <= info.width) & (kp[:, 1] >= 0) & (kp[:, 1] <= info.height)
            good = (kp[:, 2] >= kpt_thr) & inside
            coco_kp = np.where(good[:, None], np.c_[kp[:, :2], np.full(len(kp), 2.0)], 0.0)
            annotations.append({
                "id": len(annotations) + 1, "image_id": info.image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": [round(float(v), 3) if j % 3 < 2 else int(v) for j, v in enumerate(coco_kp.ravel())],
                "keypoint_scores": [round(float(s), 4) for s in kp[:, 2]],
                "num_keypoints": int(good.sum()),
                "bbox": [round(float(v), 2) for v in box],
                "area": round(float(box_oks_area(box)[0]), 2),
                "score": res["score"],
            })
    return {"images": images, "annotations": annotations, "categories": [person_category(schema)]}, results


def _number_frames(posed: list[PosedImage], items: Sequence[InputItem]) -> list[PosedImage]:
    """Sorted by input then frame, video frames numbered after every still image's id."""
    posed = sorted(posed, key=lambda p: (p.info.item, p.info.frame))
    next_id = max((it.image_id for it in items if not it.video), default=0) + 1
    for p in posed:
        if p.info.frame >= 0:
            p.info = dataclasses.replace(p.info, image_id=next_id)
            next_id += 1
    return posed


def _picture_names(items: Sequence[InputItem]) -> list[str]:
    """``<stem>.jpg`` / ``<stem>_pose.mp4`` per input, disambiguated when two inputs share a stem."""
    names, used = [], set()
    for index, item in enumerate(items):
        name = f"{item.path.stem}_pose.mp4" if item.video else f"{item.path.stem}.jpg"
        if name in used:
            tag = index if item.video else item.image_id
            name = f"{item.path.stem}_{tag}_pose.mp4" if item.video else f"{item.path.stem}_{tag}.jpg"
        used.add(name)
        names.append(name)
    return names


def _draw(image_bgr: np.ndarray, p: PosedImage | None, schema: KeypointSchema, kpt_thr: float,
          instance_thr: float) -> np.ndarray:
    if p is None or not p.results:
        return image_bgr
    kps = np.array([r["keypoints"] for r in p.results], dtype=np.float64).reshape(len(p.results), -1, 3)
    scores = np.array([r["score"] for r in p.results])
    return draw_poses(image_bgr, kps, schema, boxes=p.boxes, scores=scores, kpt_thr=kpt_thr, instance_thr=instance_thr)


class _VideoOut:
    """Drawn frames to ``target`` (mp4v) through a temporary name, renamed once complete, so a crash never
    leaves a half-written video behind."""

    def __init__(self, target: Path, fps: float) -> None:
        self.target, self.fps = target, fps
        self.tmp = target.with_name(f".{target.stem}.tmp.mp4")
        self.writer: cv2.VideoWriter | None = None
        self.failed = False

    def write(self, frame: np.ndarray) -> None:
        if self.failed:
            return
        if self.writer is None:
            height, width = frame.shape[:2]
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.writer.isOpened():
                print(f"cannot write {self.target}: OpenCV has no mp4v video encoder", file=sys.stderr)
                self.failed = True
                return
        self.writer.write(frame)

    def close(self) -> Path | None:
        """The finished video, or None when no frame was written."""
        if self.writer is None or self.failed:
            return None
        self.writer.release()
        os.replace(self.tmp, self.target)
        return self.target


# --------------------------------------------------------------------------------------------- run


def _merge(reports: list[SkipReport]) -> SkipReport:
    merged = SkipReport()
    for r in reports:
        merged.reasons.update(r.reasons)
        merged.examples.extend(r.examples[: max(0, 5 - len(merged.examples))])
    return merged


def run_predict(cfg: Config, checkpoint: Checkpoint, items: list[InputItem], boxes: BoxSource | None,
                out_dir: str | Path, info: DistInfo, progress: bool = True, draw: bool = True) -> PredictSummary | None:
    """Pose ``items`` with ``boxes`` (``None``: the whole picture is one person, score 1).

    Under ``torchrun`` each rank poses (and draws) every world_size-th input (a video stays on one rank)
    and rank 0 gathers the poses and writes the JSON files; other ranks return ``None``. Unreadable
    pictures are reported and skipped, whatever ``data.on_error`` says: a folder of photos is not a data set.
    """
    out_dir = Path(out_dir)
    poser = Poser.from_checkpoint(cfg, checkpoint, info.device, on_error="skip")
    schema = poser.schema
    det_report = SkipReport()
    detections: dict[int, Detections] = {}
    if boxes is not None and boxes.kind == "detections":
        detections = file_detections(boxes.path, cfg, numbered_ids(items), det_report, warn=info.is_main)
        if info.is_main:
            _warn_unmatched(items, boxes.path)
    detector = make_detector(boxes, cfg, info.device) if boxes is not None and boxes.kind not in (
        "gt", "detections") else None
    predictor = _Predictor(poser, cfg, boxes, detections, detector, out_dir / "vis" if draw else None,
                           _picture_names(items))
    mine = shard(list(enumerate(items)), info)
    stills = [(i, it) for i, it in mine if not it.video]
    with progress_bar(total=len(stills), desc="predict", unit="img", enabled=progress and info.is_main) as bar:
        posed = predictor.pose_images(stills, bar)
        for index, item in mine:
            if item.video:
                posed += predictor.pose_video(index, item, bar)
    posed = gather_lists(posed, info)
    reports = gather_lists([predictor.report], info)
    pictures = gather_lists(predictor.pictures, info)
    if not info.is_main:
        return None
    posed = _number_frames(posed, items)
    predictions, results = coco_predictions(posed, items, schema, cfg.test.kpt_score_thr)
    pred_path, res_path = out_dir / "predictions.json", out_dir / "results.json"
    save_json(predictions, pred_path)
    save_json(results, res_path)
    frames = sum(p.info.frame >= 0 for p in posed)
    return PredictSummary(len(posed) - frames, frames, len(results), _merge([*reports, det_report]), pred_path,
                          res_path, sorted(pictures))


def _warn_unmatched(items: Sequence[InputItem], detections_path: str | None) -> None:
    """A detections file refers to images by id, so unnumbered images and video frames get no boxes."""
    numbered = numbered_ids(items)
    lost = [it.name for it in items if it.video or it.image_id not in numbered]
    if lost:
        shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        print(f"warning: {len(lost)} input(s) get no boxes from {detections_path}: their ids do not come from a "
              f"numeric file-name stem (e.g. 000000000785.jpg -> 785), or a video: {shown}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    items, warnings = collect_inputs(args.inputs)  # a missing input stops here, before any work
    if args.detector_weights and not args.detector:
        raise OksposeError("--detector-weights goes with --detector")
    if args.detections and not Path(args.detections).is_file():
        raise OksposeError(f"detections file not found: {args.detections}")
    cfg, checkpoint = command_config(args.config, args.overrides, args.checkpoint, args.engine)
    source = None if args.whole_image else BoxSource.choose(args.detections, args.detector, args.detector_weights)
    info = init_distributed(args.device)
    try:
        if info.is_main:
            for line in warnings:
                print(f"warning: {line}", file=sys.stderr)
        summary = run_predict(cfg, checkpoint, items, source, args.out, info, draw=not args.no_vis)
    finally:
        cleanup(info)
    if summary is not None:
        frames = f" and {summary.frames} video frames" if summary.frames else ""
        print(f"posed {summary.images} images{frames}: {summary.persons} persons")
        if summary.skipped.total:
            print(summary.skipped.summary())
        vis = f", {len(summary.pictures)} pictures in {Path(args.out) / 'vis'}" if summary.pictures else ""
        print(f"wrote {summary.predictions}, {summary.results}{vis}")
    return 0
