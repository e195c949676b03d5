"""Procedural COCO-format "people scenes": the offline default data set of the demo.

The demo has to train and evaluate without downloading COCO, so we draw cartoon people whose 17 COCO
joints are known exactly. Bodies are posed in 3D (one-way elbow and knee hinges, joint-angle limits,
proportions relative to a per-person height) and projected orthographically, so foreshortening and
self-overlap look like a person seen by a camera rather than random sticks.

Left and right stay learnable from two consistent cues: the face (eyes, nose, ears, hair at the back
of the head) shows which way the person faces, and left limbs are always a lighter shade of the
clothing while right limbs are a darker one. Views range from frontal to near-profile; back views are
left out because they would leave only the shading cue.

Coordinates follow OpenCV's convention (integer = pixel centre), like :mod:`okspose.data.transforms`.
Visibility flags follow COCO: 2 visible, 1 labeled but hidden (behind a person drawn in front of it, or
an eye/ear/nose on the far side of the head), 0 with (x, y) = (0, 0) when the joint is outside the image.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from okspose.data.remap import person_category
from okspose.fileio import save_image, save_json
from okspose.keypoints import COCO17

MIN_VISIBLE_AREA = 200  # people whose visible mask is smaller are rendered but not annotated
JPEG_QUALITY = 95

_SHIFT = 4  # cv2 drawing with 1/16-pixel precision, so joints are not snapped to the pixel grid
_ONE = 1 << _SHIFT

# Segment lengths and thicknesses as fractions of standing height (roughly Drillis & Contini).
_LENGTHS = {
    "torso": 0.29, "shoulder": 0.115, "hip": 0.085, "neck": 0.05, "head": 0.065,
    "upper_arm": 0.186, "forearm": 0.146, "thigh": 0.245, "shin": 0.246,
}
_WIDTHS = {"upper_arm": 0.05, "forearm": 0.042, "thigh": 0.075, "shin": 0.058, "neck": 0.045,
           "hand": 0.028, "foot": 0.038}

# Face landmarks on the head sphere: (azimuth to the person's left, elevation, radius factor,
# minimum facing-the-camera cosine to count as visible). Ears stick out, so they show a bit past 90 deg.
_FACE = {
    "nose": (0.0, -22.0, 1.12, 0.0),
    "left_eye": (30.0, 8.0, 1.0, 0.12),
    "right_eye": (-30.0, 8.0, 1.0, 0.12),
    "left_ear": (96.0, -4.0, 1.0, -0.35),
    "right_ear": (-96.0, -4.0, 1.0, -0.35),
}


def _rx(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_DOWN = np.array([0.0, -1.0, 0.0])
_UP = np.array([0.0, 1.0, 0.0])
_FWD = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Body:
    """A posed person in camera axes (x right, y down, z toward the camera), in units of standing height.

    The extra points (neck, head, hands, feet, torso outline) exist only for drawing; ``joints`` is the
    ground truth in COCO-17 order.
    """

    joints: np.ndarray  # [17, 3]
    face_visible: np.ndarray  # [5] bool: nose, eyes, ears on the camera side of the head
    neck: np.ndarray  # [2, 3] neck base, neck top
    head: np.ndarray  # [3] head centre
    head_radius: float
    face: np.ndarray  # [3] centre of the skin-coloured face patch
    facing: np.ndarray  # [3] unit vector the face points along
    hands: np.ndarray  # [2, 3] left, right hand centre
    feet: np.ndarray  # [2, 2, 3] left/right (heel, toe)
    torso: np.ndarray  # [K, 3] points whose 2D convex hull is the torso
    pelvis: np.ndarray  # [K, 3] points whose 2D convex hull is the belt/shorts patch
    widths: dict[str, float]


class _Limb(NamedTuple):
    mid: np.ndarray  # elbow / knee
    end: np.ndarray  # wrist / ankle
    end_dir: np.ndarray  # direction of the lower segment
    end_front: np.ndarray  # the lower segment's front (where a foot points)


def _limb(root: np.ndarray, frame: np.ndarray, side: int, angles: tuple[float, float, float, float],
          lengths: tuple[float, float], bend: int) -> _Limb:
    """Pose a two-segment limb hanging from ``root``.

    ``angles`` = (abduction away from the midline, forward flexion, inward twist, hinge flexion) in
    degrees; ``side`` is +1 for left, -1 for right. The hinge only bends one way: elbows toward the front
    of the upper arm (``bend`` = +1), knees toward the back of the thigh (``bend`` = -1).
    """
    abduct, flex, twist, hinge = angles
    rot = frame @ _rx(-flex) @ _rz(side * abduct) @ _ry(-side * twist)
    d, f = rot @ _DOWN, rot @ _FWD
    h = np.radians(hinge)
    d2 = np.cos(h) * d + bend * np.sin(h) * f
    f2 = -bend * np.sin(h) * d + np.cos(h) * f
    mid = root + lengths[0] * d
    return _Limb(mid, mid + lengths[1] * d2, d2, f2)


def _sample_arm(rng: np.random.Generator) -> tuple[float, float, float, float]:
    if rng.random() < 0.45:  # relaxed
        return (rng.uniform(3, 35), rng.uniform(-25, 45), rng.uniform(-10, 60), rng.uniform(0, 70))
    return (rng.uniform(-15, 175), rng.uniform(-40, 100), rng.uniform(-40, 80), rng.uniform(0, 145))


def _sample_leg(rng: np.random.Generator) -> tuple[float, float, float, float]:
    u = rng.random()
    if u < 0.55:  # standing
        return (rng.uniform(-3, 15), rng.uniform(-10, 20), rng.uniform(-10, 25), rng.uniform(0, 20))
    if u < 0.9:  # walking, stepping
        return (rng.uniform(-5, 40), rng.uniform(-35, 70), rng.uniform(-15, 30), rng.uniform(0, 100))
    return (rng.uniform(0, 45), rng.uniform(50, 100), rng.uniform(-15, 30), rng.uniform(20, 130))


def _sample_yaw(rng: np.random.Generator) -> float:
    """Mostly near-frontal, a share of three-quarter to near-profile views; never from behind."""
    if rng.random() < 0.65:
        return float(np.clip(rng.normal(0.0, 22.0), -50.0, 50.0))
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(45.0, 75.0))


def _proportions(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
    """Per-person build: one width factor, one limb factor, and a little independent jitter per segment."""
    width, limb = rng.uniform(0.88, 1.12), rng.uniform(0.94, 1.06)
    lengths = {k: v * rng.uniform(0.96, 1.04) for k, v in _LENGTHS.items()}
    for k in ("shoulder", "hip"):
        lengths[k] *= width
    for k in ("upper_arm", "forearm", "thigh", "shin"):
        lengths[k] *= limb
    widths = {k: v * width * rng.uniform(0.93, 1.07) for k, v in _WIDTHS.items()}
    return lengths, widths


def _head(rng: np.random.Generator, torso_frame: np.ndarray, neck_base: np.ndarray, yaw: float,
          lengths: dict[str, float]) -> tuple[np.ndarray, ...]:
    """Head frame and points; the head turns at most to a near-profile so the face stays in view."""
    twist = float(np.clip(rng.uniform(-30, 30), -80 - yaw, 80 - yaw))
    frame = torso_frame @ _ry(twist) @ _rx(rng.uniform(-15, 20)) @ _rz(rng.uniform(-12, 12))
    neck_top = neck_base + lengths["neck"] * (torso_frame @ _UP)
    r = lengths["head"]
    centre = neck_top + 0.9 * r * (frame @ _UP)
    marks = []
    for az, el, k, _ in _FACE.values():
        a, e = np.radians(az), np.radians(el)
        marks.append(k * np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)]))
    dirs = np.stack(marks) @ frame.T  # [5, 3] landmark directions from the head centre
    face = centre + r * (frame @ np.array([0.0, -0.2, 0.3]))
    return neck_top, centre, centre + r * dirs, dirs, face, frame @ _FWD


def sample_body(rng: np.random.Generator) -> Body:
    """Draw a random plausible pose and build in 3D, returned in camera axes."""
    lengths, widths = _proportions(rng)
    yaw = _sample_yaw(rng)
    roll = float(np.clip(rng.normal(0.0, 6.0), -15, 15))
    torso_frame = _rz(roll) @ _rx(float(np.clip(rng.normal(3.0, 8.0), -15, 25)))
    hip_frame = _rz(0.3 * roll)
    neck_base = lengths["torso"] * (torso_frame @ _UP)
    sides = (1, -1)  # left, right
    shoulders = [neck_base + torso_frame @ np.array([s * lengths["shoulder"], -0.025, 0.0]) for s in sides]
    hips = [hip_frame @ np.array([s * lengths["hip"], 0.0, 0.0]) for s in sides]
    arm_len = (lengths["upper_arm"], lengths["forearm"])
    leg_len = (lengths["thigh"], lengths["shin"])
    arms = [_limb(shoulders[i], torso_frame, s, _sample_arm(rng), arm_len, 1) for i, s in enumerate(sides)]
    legs = [_limb(hips[i], hip_frame, s, _sample_leg(rng), leg_len, -1) for i, s in enumerate(sides)]
    neck_top, head_c, marks, mark_dirs, face, facing = _head(rng, torso_frame, neck_base, yaw, lengths)

    joints = np.empty((17, 3))
    joints[0:5] = marks
    joints[[5, 6]] = shoulders
    joints[[7, 8]] = [a.mid for a in arms]
    joints[[9, 10]] = [a.end for a in arms]
    joints[[11, 12]] = hips
    joints[[13, 14]] = [g.mid for g in legs]
    joints[[15, 16]] = [g.end for g in legs]
    hands = np.stack([a.end + 0.035 * a.end_dir for a in arms])
    feet = np.stack([[g.end + 0.015 * g.end_dir - 0.02 * g.end_front,
                      g.end + 0.015 * g.end_dir + 0.10 * g.end_front] for g in legs])
    torso = np.concatenate([_slab(shoulders, torso_frame, 0.06, 0.02), _slab(hips, hip_frame, 0.07, 0.025),
                            neck_base[None]])
    pelvis = np.concatenate([_slab(hips, hip_frame, 0.07, 0.025),
                             _slab([h + hip_frame @ (0.045 * _UP) for h in hips], hip_frame, 0.07, 0.02)])

    to_cam = _ry(yaw)
    flip = np.array([1.0, -1.0, 1.0])  # body y is up, image y is down

    def cam(p: np.ndarray) -> np.ndarray:
        return (np.asarray(p) @ to_cam.T) * flip

    cos_facing = (mark_dirs @ to_cam.T)[:, 2] / np.linalg.norm(mark_dirs, axis=1)
    return Body(
        joints=cam(joints), face_visible=cos_facing > np.array([v[3] for v in _FACE.values()]),
        neck=cam([neck_base, neck_top]), head=cam(head_c), head_radius=lengths["head"], face=cam(face),
        facing=cam(facing), hands=cam(hands), feet=cam(feet), torso=cam(torso), pelvis=cam(pelvis),
        widths=widths,
    )


def _slab(points: list[np.ndarray], frame: np.ndarray, depth: float, out: float) -> np.ndarray:
    """Corners that give a left/right pair of points front-back depth and a little outward width."""
    corners = []
    for p, s in zip(points, (1, -1), strict=True):
        corners += [p + frame @ np.array([0.0, 0.0, dz]) for dz in (-depth, depth)]
        corners.append(p + frame @ np.array([s * out, 0.0, 0.0]))
    return np.stack(corners)


# ---------------------------------------------------------------------------------------------- style


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    px = np.array([[[h, s, v]]], dtype=np.uint8)
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


def _bgr(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.round(c), 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


_SKIN = np.array([[95, 140, 205], [120, 170, 230], [60, 105, 160], [40, 70, 115], [150, 190, 235],
                  [80, 125, 185]], dtype=np.float64)  # BGR


def _sample_style(rng: np.random.Generator) -> dict[str, tuple[int, int, int]]:
    """Clothing colours; left limbs lighter and right limbs darker than the garment, for every person."""
    shirt = _hsv_to_bgr(rng.integers(0, 180), rng.integers(90, 231), rng.integers(100, 201))
    pants = _hsv_to_bgr(rng.integers(0, 180), rng.integers(60, 231), rng.integers(70, 181))
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.08)
    hair = _hsv_to_bgr(rng.integers(0, 30), rng.integers(40, 200), rng.integers(20, 110))
    shoe = _hsv_to_bgr(rng.integers(0, 180), rng.integers(0, 120), rng.integers(25, 90))
    return {
        "shirt": _bgr(shirt), "pants": _bgr(pants), "skin": _bgr(skin), "hair": _bgr(hair),
        "shoe": _bgr(shoe), "nose": _bgr(skin * 0.8),
        "arm_l": _bgr(shirt + 0.45 * (255 - shirt)), "arm_r": _bgr(shirt * 0.55),
        "leg_l": _bgr(pants + 0.45 * (255 - pants)), "leg_r": _bgr(pants * 0.55),
        "pad_l": _bgr(shirt * 0.8 + 0.2 * 255), "pad_r": _bgr(shirt * 0.35),
        "kpad_l": _bgr(pants * 0.8 + 0.2 * 255), "kpad_r": _bgr(pants * 0.35),
    }


# -------------------------------------------------------------------------------------------- drawing


class _Prim(NamedTuple):
    kind: str  # "seg" (capsule), "disk" or "poly" (convex polygon)
    pts: np.ndarray  # [K, 2] pixel coordinates
    size: float  # capsule thickness or disk radius in pixels; unused for polygons
    colour: tuple[int, int, int]
    outline: bool = True


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, dtype=np.float64) * _ONE).astype(np.int32)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(p[0]), int(p[1])


def _draw(img: np.ndarray, label: np.ndarray, prim: _Prim, value: int) -> None:
    """Draw one primitive into the picture (anti-aliased, dark outline) and into the label map."""
    p = _fixed(np.reshape(prim.pts, (-1, 2)))
    edge = tuple(int(c * 0.45) for c in prim.colour)
    pad = 2 if prim.outline else 0
    aa, hard = cv2.LINE_AA, cv2.LINE_8
    if prim.kind == "seg":
        a, b, t = _pt(p[0]), _pt(p[1]), max(round(prim.size), 1)
        if pad:
            cv2.line(img, a, b, edge, t + pad, aa, _SHIFT)
        cv2.line(img, a, b, prim.colour, t, aa, _SHIFT)
        cv2.line(label, a, b, value, t + pad, hard, _SHIFT)
    elif prim.kind == "disk":
        c, r = _pt(p[0]), max(round(prim.size * _ONE), _ONE // 2)
        if pad:
            cv2.circle(img, c, r + _ONE, edge, -1, aa, _SHIFT)
        cv2.circle(img, c, r, prim.colour, -1, aa, _SHIFT)
        cv2.circle(label, c, r + _ONE * (pad // 2), value, -1, hard, _SHIFT)
    else:
        hull = cv2.convexHull(p)
        cv2.fillConvexPoly(img, hull, prim.colour, aa, _SHIFT)
        cv2.fillConvexPoly(label, hull, value, hard, _SHIFT)
        if pad:
            cv2.polylines(img, [hull], True, edge, pad, aa, _SHIFT)
            cv2.polylines(label, [hull], True, value, pad, hard, _SHIFT)


_Parts = list[tuple[float, list[_Prim]]]  # (depth, primitives) groups


def _person_parts(body: Body, style: dict, scale: float, offset: np.ndarray) -> _Parts:
    """(depth, primitives) groups of one person; drawing them far to near is a painter's algorithm."""

    def px(p: np.ndarray) -> np.ndarray:
        return np.asarray(p)[..., :2] * scale + offset

    def w(name: str) -> float:
        return max(body.widths[name] * scale, 2.0)

    j, z = body.joints, body.joints[:, 2]
    parts: _Parts = []
    torso_z = float(body.torso[:, 2].mean())
    parts.append((torso_z, [_Prim("poly", px(body.torso), 0, style["shirt"]),
                            _Prim("poly", px(body.pelvis), 0, style["pants"])]))
    parts.append((torso_z + 0.001, [_Prim("seg", px(body.neck), w("neck"), style["skin"])]))
    for i, tag in enumerate("lr"):
        sh, el, wr = 5 + i, 7 + i, 9 + i
        hip, kn, an = 11 + i, 13 + i, 15 + i
        arm, leg = style[f"arm_{tag}"], style[f"leg_{tag}"]
        upper, fore = (z[sh] + z[el]) / 2 + 0.03, (z[el] + z[wr]) / 2 + 0.03
        thigh, shin = (z[hip] + z[kn]) / 2 + 0.02, (z[kn] + z[an]) / 2 + 0.02
        parts += [
            (upper, [_Prim("seg", px(j[[sh, el]]), w("upper_arm"), arm)]),
            (fore, [_Prim("seg", px(j[[el, wr]]), w("forearm"), arm)]),
            (max(upper, fore) + 0.001, [_Prim("disk", px(j[el]), 0.3 * w("upper_arm"), style[f"pad_{tag}"],
                                             False)]),
            (z[wr] + 0.035, [_Prim("disk", px(body.hands[i]), w("hand"), style["skin"])]),
            (thigh, [_Prim("seg", px(j[[hip, kn]]), w("thigh"), leg)]),
            (shin, [_Prim("seg", px(j[[kn, an]]), w("shin"), leg)]),
            (max(thigh, shin) + 0.001, [_Prim("disk", px(j[kn]), 0.3 * w("thigh"), style[f"kpad_{tag}"],
                                             False)]),
            (z[an] + 0.03, [_Prim("seg", px(body.feet[i]), w("foot"), style["shoe"])]),
        ]
    parts += _head_parts(body, style, scale, px)
    return parts


def _head_parts(body: Body, style: dict, scale: float, px: Callable[[np.ndarray], np.ndarray]) -> _Parts:
    """Hair-coloured head, skin face patch turned the way the person looks, eyes, nose and ears."""
    r = max(body.head_radius * scale, 3.0)
    hz = float(body.head[2]) + 0.05
    head = [_Prim("disk", px(body.head), r, style["hair"]),
            _Prim("disk", px(body.face), 0.72 * r, style["skin"], False)]
    behind: list[_Prim] = []
    for k in (3, 4):  # ears
        ear = _Prim("disk", px(body.joints[k]), 0.24 * r, style["skin"])
        facing_z = (body.joints[k] - body.head)[2]
        (head if facing_z >= 0 else behind).append(ear)
    for k in (1, 2):
        if body.face_visible[k]:
            head += [_Prim("disk", px(body.joints[k]), max(0.22 * r, 1.0), (235, 235, 235), False),
                     _Prim("disk", px(body.joints[k] + 0.05 * body.head_radius * body.facing),
                           max(0.11 * r, 0.6), (40, 25, 20), False)]
    head.append(_Prim("disk", px(body.joints[0]), max(0.14 * r, 1.0), style["nose"], False))
    return [(hz - 0.002, behind), (hz, head)]


# ------------------------------------------------------------------------------------------ background


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return _bgr(rng.uniform(0, 255, 3))


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Gradient + smooth noise + clutter that is deliberately not person-like (no limb chains).

    Gradient and noise are built on a coarse grid and upsampled once, which is what keeps generation fast.
    """
    gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    c0, c1 = rng.uniform(0, 255, (2, 3))
    a = rng.uniform(0, 2 * np.pi)
    t = np.linspace(0, 1, gw)[None, :] * np.cos(a) + np.linspace(0, 1, gh)[:, None] * np.sin(a)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    grid = c0 + t[..., None] * (c1 - c0) + (rng.random((gh, gw, 3)) - 0.5) * rng.uniform(20, 120)
    grid = np.clip(np.round(grid), 0, 255).astype(np.uint8)
    img = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 14))):
        _clutter(rng, img)
    return img


def _indoor_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A room: a flat wall with a few framed panels above a tiled floor seen in perspective."""
    wall, floor, grout = (_random_colour(rng) for _ in range(3))
    img = np.empty((height, width, 3), np.uint8)
    horizon = int(rng.uniform(0.35, 0.7) * height)
    img[:horizon] = wall
    img[horizon:] = floor
    for _ in range(int(rng.integers(1, 5))):  # doors, windows, pictures
        x0, y0 = int(rng.uniform(0, width)), int(rng.uniform(0, max(horizon - 20, 1)))
        x1, y1 = x0 + int(rng.uniform(0.05, 0.3) * width), y0 + int(rng.uniform(0.1, 0.5) * height)
        cv2.rectangle(img, (x0, y0), (x1, min(y1, horizon)), _random_colour(rng), -1)
        cv2.rectangle(img, (x0, y0), (x1, min(y1, horizon)), _random_colour(rng), int(rng.integers(2, 6)))
    vanish = (rng.uniform(0.2, 0.8) * width, horizon - rng.uniform(0.3, 1.0) * height)
    for x in np.linspace(-width, 2 * width, int(rng.integers(6, 16))):  # tile lines toward a vanishing point
        t = (height - horizon) / max(height - vanish[1], 1.0)
        top = (vanish[0] + (x - vanish[0]) * (1 - t), horizon)
        cv2.line(img, _pt(top), (int(x), height), grout, 1, cv2.LINE_AA)
    for y in horizon + (height - horizon) * np.linspace(0, 1, int(rng.integers(3, 9))) ** 1.6:
        cv2.line(img, (0, int(y)), (width, int(y)), grout, 1, cv2.LINE_AA)
    return img


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    colour = _random_colour(rng)
    kind = rng.integers(5)
    c = _pt(rng.uniform(0, 1, 2) * (w, h))
    size = rng.uniform(0.03, 0.3) * min(w, h)
    fill = -1 if rng.random() < 0.7 else int(rng.integers(1, 4))
    if kind == 0:
        p2 = _pt(np.array(c) + rng.uniform(-1, 1, 2) * size * 2)
        cv2.rectangle(img, c, p2, colour, fill, cv2.LINE_AA)
    elif kind == 1:
        axes = _pt(rng.uniform(0.3, 1.0, 2) * size)
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, fill, cv2.LINE_AA)
    elif kind == 2:
        pts = (np.array(c) + rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)) * size * 1.5).astype(np.int32)
        cv2.fillConvexPoly(img, cv2.convexHull(pts), colour, cv2.LINE_AA)
    elif kind == 3:
        p2 = _pt(np.array(c) + rng.uniform(-1, 1, 2) * size * 3)
        cv2.line(img, c, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    else:  # a striped panel
        x0, y0 = c
        x1, y1 = _pt(np.array(c) + rng.uniform(0.5, 1.5, 2) * size * 1.5)
        step = int(rng.integers(3, 10))
        for x in range(x0, min(x1, w), step * 2):
            cv2.rectangle(img, (x, y0), (x + step - 1, y1), colour, -1)


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Mild blur and sensor noise so the network cannot rely on perfectly crisp edges."""
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.0))
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32) * np.float32(rng.uniform(1.0, 5.0))
    return cv2.add(img, cv2.merge([noise] * 3), dtype=cv2.CV_8U)  # grey sensor noise, saturating


# --------------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Scene:
    """One rendered picture; ``label`` holds 1 + the draw index of the person that owns each pixel."""

    image: np.ndarray  # [H, W, 3] uint8 BGR
    label: np.ndarray  # [H, W] uint8, 0 = background
    keypoints: np.ndarray  # [N, 17, 3] (x, y, v) per person in draw order (back to front)
    head_neck: np.ndarray  # [N, 2, 3] AI Challenger's head top and neck, same flags


@dataclass(frozen=True)
class SceneParams:
    """What makes a family of scenes: person sizes, in-plane tilt of whole bodies, background style."""

    height_range: tuple[float, float] = (0.35, 0.95)  # standing height as a fraction of the image height
    tilt_std: float = 0.0  # degrees; 0 keeps people upright (and draws nothing from the generator)
    background: str = "outdoor"  # "outdoor": gradient + clutter; "indoor": wall, floor and tiles


COCO_LIKE = SceneParams()


def _place(rng: np.random.Generator, body: Body, width: int, height: int,
           height_range: tuple[float, float] = (0.35, 0.95)) -> tuple[float, np.ndarray]:
    """Scale a body to a fraction of the image height and put its box centre anywhere in the picture."""
    scale = rng.uniform(*height_range) * height
    pts = np.concatenate([body.joints, body.head[None], body.feet.reshape(-1, 3)])[:, :2] * scale
    centre = (pts.min(0) + pts.max(0)) / 2
    target = rng.uniform((0.05 * width, 0.3 * height), (0.95 * width, 0.75 * height))
    return scale, target - centre


def _visibility(xy: np.ndarray, label: np.ndarray, value: int, far_side: np.ndarray | None = None) -> np.ndarray:
    """COCO flags: 0 outside the image, 1 behind someone in front (or ``far_side``: the far side of the
    head), else 2."""
    h, w = label.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    cols = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    hidden = label[rows, cols] > value
    if far_side is not None:
        hidden |= far_side
    return np.where(inside, np.where(hidden, 1, 2), 0)


def head_top_and_neck(body: Body) -> np.ndarray:
    """AI Challenger's extra joints [2, 3] from the 3D skeleton: the top of the head (the head sphere's
    point along the neck-to-head-centre axis) and the neck (midway along the neck)."""
    up = body.head - body.neck[1]
    return np.stack([body.head + body.head_radius * up / np.linalg.norm(up), body.neck.mean(0)])


def _tilt(body: Body, degrees: float) -> Body:
    """The whole body turned in the picture plane about its pelvis (leaning, falling, acrobatics)."""
    rot = _rz(degrees)
    arrays = {f: getattr(body, f) @ rot.T for f in ("joints", "neck", "head", "face", "facing", "hands", "feet",
                                                    "torso", "pelvis")}
    return dataclasses.replace(body, **arrays)


def render_scene(rng: np.random.Generator, width: int = 320, height: int = 256, max_people: int = 3,
                 params: SceneParams = COCO_LIKE) -> Scene:
    """Draw 1..max_people people back to front over a random background; returns ground truth too."""
    if not 1 <= max_people <= 254:
        raise ValueError(f"max_people must be in 1..254, got {max_people}")
    img = (_indoor_background if params.background == "indoor" else _background)(rng, width, height)
    label = np.zeros((height, width), np.uint8)
    people = []
    for _ in range(int(rng.integers(1, max_people + 1))):
        body = sample_body(rng)
        if params.tilt_std > 0:
            body = _tilt(body, float(np.clip(rng.normal(0.0, params.tilt_std), -70, 70)))
        scale, offset = _place(rng, body, width, height, params.height_range)
        bottom = float(body.feet[..., 1].max() * scale + offset[1])
        people.append((bottom + rng.normal(0, 0.05 * height), body, _sample_style(rng), scale, offset))
    people.sort(key=lambda p: p[0])  # lower on the ground = nearer the camera = drawn later
    xys = []
    for k, (_, body, style, scale, offset) in enumerate(people):
        for _, prims in sorted(_person_parts(body, style, scale, offset), key=lambda d: d[0]):
            for prim in prims:
                _draw(img, label, prim, k + 1)
        points = np.concatenate([body.joints, head_top_and_neck(body)])
        xys.append(np.round(points[:, :2] * scale + offset, 2))
    kpts = np.zeros((len(people), 19, 3))
    for k, ((_, body, *_), xy) in enumerate(zip(people, xys, strict=True)):
        v = _visibility(xy, label, k + 1, np.r_[~body.face_visible, np.zeros(14, bool)])
        kpts[k, :, :2] = np.where(v[:, None] > 0, xy, 0.0)
        kpts[k, :, 2] = v
    return Scene(_finish(rng, img), label, kpts[:, :17], kpts[:, 17:])


# ------------------------------------------------------------------------------------------- data set


def _split_key(split: str) -> int:
    """Stable per-split seed component, so train and val with the same seed are different pictures."""
    return zlib.crc32(split.encode())


def _annotation(ann_id: int, image_id: int, kpts: np.ndarray, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(kpts.reshape(-1).tolist())],
        "num_keypoints": int((kpts[:, 2] > 0).sum()),
        "area": float(mask_utils.area(rle)),
        "bbox": [float(b) for b in mask_utils.toBbox(rle)],
        "segmentation": rle,
    }


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    save_image(image, path, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def generate_synthetic_coco(
    root: str | Path,
    split: str = "train",
    num_images: int = 200,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 256),
    max_people: int = 3,
) -> Path:
    """Write ``root/{split}/{id:012d}.jpg`` and ``root/annotations/person_keypoints_{split}.json``.

    Each image is drawn from its own generator seeded by (seed, split, index), so the output is
    byte-identical for identical arguments and any image can be regenerated alone. Returns the
    annotation path.
    """
    if seed < 0 or num_images < 0:
        raise ValueError("seed and num_images must be non-negative")
    width, height = (int(v) for v in image_size)
    if min(width, height) < 32:
        raise ValueError(f"image_size is (width, height) of at least 32 pixels, got {image_size}")
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        image_id = index + 1
        rng = np.random.default_rng([seed, _split_key(split), index])
        scene = render_scene(rng, width, height, max_people)
        file_name = f"{image_id:012d}.jpg"
        _write_jpeg(root / split / file_name, scene.image)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for k, kpts in enumerate(scene.keypoints):
            mask = scene.label == k + 1
            if mask.sum() >= MIN_VISIBLE_AREA:
                annotations.append(_annotation(len(annotations) + 1, image_id, kpts, mask))
    coco = {
        "info": {"description": "okspose synthetic people scenes (procedurally drawn, not photographs)",
                 "synthetic": True, "seed": seed, "split": split, "generator": "okspose.data.synthetic"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [person_category(COCO17)],
    }
    return save_json(coco, root / "annotations" / f"person_keypoints_{split}.json")
