"""Identities across video frames, and optional smoothing of each identity's joints.

Matching is greedy on a frame-to-frame similarity, the approach of the PoseTrack baselines (Xiao et al.
2018, "Simple Baselines for Human Pose Estimation and Tracking", which match on OKS; Girdhar et al. 2018,
"Detect-and-Track", on box IoU): the similarity of a posed person and a live track is the mean of the OKS
of their poses (scaled by the box areas, joints above ``kpt_thr`` in both) and the IoU of their boxes;
the best pair is matched first, and pairs below ``min_similarity`` never are. A track that goes unmatched
for more than ``max_age`` frames ends; a person matched to no track starts a new one with a new id.

Smoothing is the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012, "1€ Filter: A Simple Speed-based
Low-pass Filter for Noisy Input in Interactive Systems"): a low-pass filter whose cut-off rises with the
joint's speed, so a still joint is smoothed hard (less jitter) and a moving one follows with little lag.
Its two parameters: ``min_cutoff`` (Hz, the cut-off at rest: lower is smoother and lags more) and
``beta`` (per pixel/s of speed, how fast the cut-off rises: higher lags less on fast motion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torchvision

from okspose.inference.nms import oks_matrix


def _alpha(cutoff: np.ndarray | float, period: float) -> np.ndarray | float:
    """The smoothing factor of a first-order low-pass filter with ``cutoff`` Hz sampled every ``period`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / period)


@dataclass
class OneEuroFilter:
    """One-Euro filter over arrays of any shape (every value filtered independently), one value per frame.

    The defaults are those of the authors' reference code (min_cutoff 1 Hz, beta 0.007, derivative
    cut-off 1 Hz); ``fps`` is the frame rate the values arrive at.
    """

    min_cutoff: float = 1.0
    beta: float = 0.007
    fps: float = 30.0
    d_cutoff: float = 1.0
    value: np.ndarray | None = None
    speed: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None:
            self.value, self.speed = x.copy(), np.zeros_like(x)
            return x
        period = 1.0 / self.fps
        a_d = _alpha(self.d_cutoff, period)
        self.speed = a_d * (x - self.value) / period + (1 - a_d) * self.speed
        a = _alpha(self.min_cutoff + self.beta * np.abs(self.speed), period)
        self.value = a * x + (1 - a) * self.value
        return self.value


@dataclass(frozen=True)
class Smoothing:
    """One-Euro filter settings for :class:`Tracker` (see :class:`OneEuroFilter`)."""

    min_cutoff: float = 1.0
    beta: float = 0.007


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # [4] xyxy
    keypoints: np.ndarray  # [K, 3] x, y, joint score
    missed: int = 0  # frames since it was last matched
    filter: OneEuroFilter | None = None


@dataclass
class Tracker:
    """Frame-to-frame identities of posed persons (greedy OKS + IoU matching), fed one frame at a time.

    Args:
        sigmas: [K] the schema's OKS falloffs.
        max_age: frames a track may go unmatched before it ends.
        min_similarity: the least similarity (mean of OKS and IoU, in [0, 1]) of a match.
        kpt_thr: joints scoring at most this are left out of the OKS.
        smoothing: One-Euro settings, or None for no smoothing (the default).
        fps: the frame rate, for the filter's cut-offs in Hz.
    """

    sigmas: Sequence[float]
    max_age: int = 30
    min_similarity: float = 0.3
    kpt_thr: float = 0.2
    smoothing: Smoothing | None = None
    fps: float = 30.0
    tracks: list[_Track] = field(default_factory=list)
    next_id: int = 1

    def similarity(self, boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """[N, T] similarity of N posed persons (boxes xyxy [N, 4], keypoints [N, K, 3]) and the live tracks."""
        n, t = len(boxes), len(self.tracks)
        if not n or not t:
            return np.zeros((n, t))
        track_boxes = np.stack([tr.box for tr in self.tracks])
        all_boxes = np.concatenate([boxes, track_boxes])
        areas = np.prod(np.clip(all_boxes[:, 2:] - all_boxes[:, :2], 0, None), axis=1)
        poses = np.concatenate([keypoints, np.stack([tr.keypoints for tr in self.tracks])])
        oks = oks_matrix(poses, areas, self.sigmas, vis_thr=self.kpt_thr)[:n, n:]
        iou = torchvision.ops.box_iou(torch.from_numpy(boxes), torch.from_numpy(track_boxes)).numpy()
        return (oks + iou) / 2

    def update(self, boxes: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Match one frame's persons to the tracks.

        Args:
            boxes: float [N, 4] xyxy image pixels.
            keypoints: float [N, K, 3] (x, y, joint score).

        Returns:
            (track ids int64 [N], keypoints [N, K, 3] with x, y smoothed per track when smoothing is on).
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keypoints = np.array(keypoints, dtype=np.float64)
        sim = self.similarity(boxes, keypoints)
        owner = np.full(len(boxes), -1)
        matched: set[int] = set()
        for flat in np.argsort(-sim, axis=None, kind="stable"):
            i, j = divmod(int(flat), sim.shape[1])
            if sim[i, j] < self.min_similarity:
                break
            if owner[i] < 0 and j not in matched:
                owner[i] = j
                matched.add(j)
        ids = np.zeros(len(boxes), dtype=np.int64)
        for track in self.tracks:
            track.missed += 1
        for i in range(len(boxes)):
            if owner[i] >= 0:
                track = self.tracks[owner[i]]
            else:
                track = _Track(self.next_id, boxes[i], keypoints[i])
                if self.smoothing is not None:
                    track.filter = OneEuroFilter(self.smoothing.min_cutoff, self.smoothing.beta, self.fps)
                self.next_id += 1
                self.tracks.append(track)
            if track.filter is not None:
                keypoints[i, :, :2] = track.filter(keypoints[i, :, :2])
            track.box, track.keypoints, track.missed, ids[i] = boxes[i], keypoints[i], 0, track.track_id
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.max_age]
        return ids, keypoints
