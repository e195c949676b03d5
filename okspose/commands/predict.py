"""``okspose predict``: pose every person in images, folders and videos through the Python API
(:class:`~okspose.inference.estimator.PoseEstimator`); inputs and ids as :mod:`okspose.data.inputs` says.

A missing input or an output that cannot be written stops the run before any work; a picture that fails to
decode is reported, counted and skipped; the output folder is locked while the run writes. ``out`` gets
``predictions.json`` and ``results.json`` (:mod:`okspose.inference.predictions`; rank 0 under torchrun),
``vis/<stem>.jpg`` per image and ``vis/<stem>_pose.mp4`` per video (each identity in its own colour).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from okspose.data.inputs import InputItem, collect_inputs, numbered_ids, picture_names, unmatched_warning
from okspose.data.records import SkipReport, read_image
from okspose.data.video import VideoWriter, read_video
from okspose.distributed import DistInfo, cleanup, gather_lists, init_distributed, shard
from okspose.errors import DataError, OksposeError
from okspose.fileio import check_writable, folder_lock, save_image
from okspose.inference.boxes import CHUNK_IMAGES, file_detections
from okspose.inference.estimator import PoseEstimator, chunks
from okspose.inference.instances import Detections
from okspose.inference.predictions import Picture, Posed, coco_predictions, number_frames, summary, write_predictions
from okspose.progress import progress as progress_bar
from okspose.run_config import command_config

NO_BOXES: Detections = (np.zeros((0, 4)), np.zeros(0))  # a picture a detections file says nothing about


def _skip(report: SkipReport, reason: str, err: Exception) -> None:
    report.add(reason, str(err))
    print(f"skipping {err}", file=sys.stderr)


def _pose_stills(est: PoseEstimator, mine: list[tuple[int, InputItem]], dets: dict[int, Detections] | None,
                 vis: Path | None, names: list[str], report: SkipReport, written: list[Path], bar) -> Iterator[Posed]:
    """Still images, ``CHUNK_IMAGES`` decoded and posed at a time; each drawn into ``vis``."""
    for part in chunks(mine, CHUNK_IMAGES):
        decoded = []
        for index, item in part:
            try:
                decoded.append((index, item, read_image(str(item.path))))
            except DataError as err:
                _skip(report, "unreadable image", err)
        boxes = None if dets is None else [dets.get(item.image_id, NO_BOXES) for _, item, _ in decoded]
        for (index, item, rgb), result in zip(decoded, est.pose_arrays([rgb for _, _, rgb in decoded], boxes)):
            if vis is not None:
                drawn = cv2.cvtColor(result.draw(rgb), cv2.COLOR_RGB2BGR)
                written.append(save_image(drawn, vis / names[index], [cv2.IMWRITE_JPEG_QUALITY, 92]))
            yield Picture(index, -1, item.image_id, item.name, str(item.path)), result
        bar.update(len(part))


def _pose_video(est: PoseEstimator, index: int, item: InputItem, detections: bool, vis: Path | None, name: str,
                report: SkipReport, written: list[Path], bar) -> Iterator[Posed]:
    """Every frame, straight from the decoder into the pose batches and the tracker, and out to ``vis``."""
    try:
        video = read_video(item.path)
    except DataError as err:
        _skip(report, "unreadable video", err)
        return
    bar.total = (bar.total or 0) + video.count
    writer = VideoWriter(vis / name, video.fps) if vis is not None else None
    held: collections.deque[np.ndarray] = collections.deque()  # frames the tracker has taken, not yet drawn

    def frames() -> Iterator[np.ndarray]:
        for frame in video:
            held.append(frame)
            yield frame

    boxes = itertools.repeat(NO_BOXES[0]) if detections else None  # a detections file names no frame
    i = -1
    for i, result in enumerate(est.track(frames(), boxes, fps=video.fps, color="bgr", batch=CHUNK_IMAGES)):
        frame = held.popleft()
        if writer is not None:
            writer.write(result.draw(frame, "bgr"))
        bar.update(1)
        yield Picture(index, i, -1, f"{item.path.stem}/{i:06d}.jpg", str(item.path)), result
    if writer is not None and (target := writer.close()) is not None:
        written.append(target)
    if video.skipped:
        report.add("unreadable video frame", f"{item.path}: {video.skipped} frame(s)")
    if i < 0:
        _skip(report, "unreadable video", DataError(f"{item.path}: no frame could be decoded"))


def run_predict(est: PoseEstimator, items: list[InputItem], dets: dict[int, Detections] | None, out: Path,
                info: DistInfo, draw: bool) -> tuple[list[Posed], SkipReport, list[Path]] | None:
    """Each rank poses (and draws) every world_size-th input (a video stays on one rank); rank 0 gets every
    posed picture, sorted and numbered, the skips and the drawn files; the others None."""
    vis = out / "vis" if draw else None
    names, report, written = picture_names(items), SkipReport(), []
    mine = shard(list(enumerate(items)), info)
    stills = [(i, it) for i, it in mine if not it.video]
    with progress_bar(total=len(stills), desc="predict", unit="img", enabled=info.is_main) as bar:
        posed = list(_pose_stills(est, stills, dets, vis, names, report, written, bar))
        for index, item in (pair for pair in mine if pair[1].video):
            posed += _pose_video(est, index, item, dets is not None, vis, names[index], report, written, bar)
    posed, reports, written = (gather_lists(x, info) for x in (posed, [report], written))
    if not info.is_main:
        return None
    first_frame_id = max((it.image_id for it in items if not it.video), default=0) + 1
    return number_frames(posed, first_frame_id), SkipReport.merged(reports), sorted(written)


def run(args: argparse.Namespace) -> int:
    items, warnings = collect_inputs(args.inputs)  # a missing input stops here, before any work
    if args.detector_weights and not args.detector:
        raise OksposeError("--detector-weights goes with --detector")
    if args.detections and not Path(args.detections).is_file():
        raise OksposeError(f"detections file not found: {args.detections}")
    out = Path(args.out)
    outputs = [(out, "output folder"), (out / "predictions.json", "predictions file"), (out / "results.json",
               "results file"), *([] if args.no_vis else [(out / "vis", "pictures folder")])]
    for path, kind in outputs:  # every output path, before the first picture is read
        check_writable(path, kind)
    cfg, checkpoint = command_config(args.config, args.overrides, args.checkpoint, args.engine)
    info = init_distributed(args.device)
    det_report, done = SkipReport(), None
    try:
        with folder_lock(out, "okspose predict") if info.is_main else contextlib.nullcontext():
            for line in warnings if info.is_main else []:
                print(f"warning: {line}", file=sys.stderr)
            est = PoseEstimator.from_config(cfg, checkpoint, args.detector, args.detector_weights, info.device)
            dets = None
            if args.detections:
                dets = file_detections(args.detections, cfg, numbered_ids(items), det_report, warn=info.is_main)
                if (line := unmatched_warning(items, args.detections)) and info.is_main:
                    print(f"warning: {line}", file=sys.stderr)
            done = run_predict(est, items, dets, out, info, draw=not args.no_vis)
            if done is not None:
                predictions, results = coco_predictions(done[0], est.schema, cfg.test.kpt_score_thr)
                paths = write_predictions(predictions, results, out)
    finally:
        cleanup(info)
    if done is not None:
        posed, report, pictures = done
        lines = summary(posed, len(results), len(pictures), paths, out / "vis")
        report = SkipReport.merged([report, det_report])
        print("\n".join(lines[:1] + ([report.summary()] if report.total else []) + lines[1:]))
    return 0
