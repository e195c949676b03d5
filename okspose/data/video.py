"""Videos in and out with OpenCV: frames streamed from the decoder (a long video is never held in memory),
a frame that cannot be decoded counted and skipped, and drawn frames written through a temporary name."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from okspose.errors import DataError

DEFAULT_FPS = 25.0  # for videos whose container does not say


@dataclass
class VideoFrames:
    """The BGR frames of one video, decoded as they are iterated (once).

    ``skipped`` counts frames the decoder failed on but that were followed by good ones; a failure with
    no good frame after it is the end of the stream (containers often claim more frames than they hold).
    """

    path: Path
    fps: float
    count: int  # frames as the container claims it
    capture: cv2.VideoCapture
    skipped: int = 0
    max_bad: int = 25  # consecutive failures that end the stream

    def __iter__(self) -> Iterator[np.ndarray]:
        bad = 0
        try:
            while bad < self.max_bad:
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    bad += 1
                    continue
                self.skipped += bad
                bad = 0
                yield frame
        finally:
            self.capture.release()


def read_video(path: str | Path) -> VideoFrames:
    """The frames of ``path``; a video OpenCV cannot open is a :class:`DataError` naming it."""
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{path}: OpenCV cannot open this video")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    return VideoFrames(path, fps, max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))), cap)


class VideoWriter:
    """Frames to ``target`` (mp4v, the first frame's size) through a temporary name, renamed once complete,
    so a crash never leaves a half-written video behind."""

    def __init__(self, target: str | Path, fps: float) -> None:
        self.target, self.fps = Path(target), fps
        self.tmp = self.target.with_name(f".{self.target.stem}.tmp.mp4")
        self.writer: cv2.VideoWriter | None = None
        self.failed = False

    def write(self, frame: np.ndarray) -> None:
        """Append a BGR frame; without an mp4v encoder one line says so and the video is not written."""
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
