"""How many of the 13,850 real AI Challenger persons (../shared/data/aic-labels) hard-example mining keeps
at each ``--oks-thr``, with OKS scaled by the whole box (the old rule) and by 0.53 x the box (the one rule,
``okspose.keypoints.box_oks_area``, that the metric and OKS-NMS use), under a simulated COCO-trained model.

No network poses them (no AI Challenger images here, and no COCO-trained weights that would be worth the
name): the stand-in's poses are the labels plus a stated error model, per labeled shared joint j of a person
with box w x h:

* with probability ``fail`` the whole person is posed wrong: it gets another person's pose, drawn at
  random, moved and scaled from that person's box into this one (as when a network poses a neighbour);
* else, with probability ``miss`` a joint is lost: it lands uniformly inside the person's box;
* otherwise it is off by a Gaussian per axis of standard deviation k x sigma_j x sqrt(0.53 w h), sigma_j
  the joint's COCO sigma: errors that grow with the person and are larger where COCO's raters disagree
  more, as a COCO-trained network's are. Then every OKS term has mean 1 / (1 + k^2 / 4) at the 0.53 scale.

The same model on the 6,352 COCO val2017 persons (../shared/data/coco-labels, OKS at their own ``area``)
gives the mean OKS and the "GT-box AP" printed beside each k (the share of persons above each OKS threshold
0.50:0.05:0.95, averaged: COCO's AP with ground-truth boxes and a perfect ranking), to say which k resembles
which network (Team OKS's HG-8 with ground-truth boxes: 75.5 AP). How often a real network fails a whole
person is not known here, and it is what mining is for: the counts move with k, miss and fail, so read them
as what a threshold does at a stated error level, not as what Team OKS mined. Mining's own functions score and
cut (``shared_joint_oks``, ``hardest``); seeded, several seeds per setting.

    python benchmarks/aic_mining_sim.py [--seeds 5] [--miss 0.05] [--k 0.5 0.65 1.0] [--fail 0 0.1]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
from bench_startup import bf16_support, cpu_flags

from okspose.data.aic import read_aic
from okspose.data.mining import hardest, shared_joint_oks
from okspose.data.remap import joint_map
from okspose.keypoints import AIC14, COCO17, box_oks_area

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AIC = SHARED / "aic-labels" / "keypoint_sample_annotations.json"
COCO_VAL = SHARED / "coco-labels" / "person_keypoints_val2017.json.gz"
THRESHOLDS = (0.3, 0.5, 0.7)


def arrays(anns: list[dict], num_joints: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [N, K, 3], boxes [N, 4] xywh and the files' areas [N] of the annotations."""
    labels = np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), num_joints, 3)
    return labels, np.array([a["bbox"] for a in anns], np.float64), np.array([a.get("area", 0.0) for a in anns])


def stand_in(labels: np.ndarray, boxes: np.ndarray, sigmas: np.ndarray, k: float, miss: float, fail: float,
             rng: np.random.Generator) -> np.ndarray:
    """The simulated model's poses [N, K, 2] of the labeled persons (see the module docstring)."""
    scale = np.sqrt(box_oks_area(boxes))[:, None, None]
    pred = labels[..., :2] + rng.normal(size=labels[..., :2].shape) * k * sigmas[None, :, None] * scale
    anywhere = boxes[:, None, :2] + rng.random(labels[..., :2].shape) * boxes[:, None, 2:]
    other = rng.permutation(len(labels))
    unit = (labels[other, :, :2] - boxes[other, None, :2]) / np.maximum(boxes[other, None, 2:], 1.0)
    neighbour = np.where(labels[other, :, 2:] > 0, boxes[:, None, :2] + unit * boxes[:, None, 2:], anywhere)
    lost = rng.random(labels.shape[:2]) < miss
    failed = rng.random(len(labels)) < fail
    return np.where(failed[:, None, None], neighbour, np.where(lost[..., None], anywhere, pred))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--miss", type=float, default=0.05, help="probability that a joint is lost")
    parser.add_argument("--k", type=float, nargs="+", default=[0.5, 0.65, 1.0], help="error sd / (sigma sqrt(A))")
    parser.add_argument("--fail", type=float, nargs="+", default=[0.0, 0.1], help="probability of a wrong person")
    args = parser.parse_args()
    model, flags = cpu_flags()
    print(f"CPU: {model}, native bf16: {bf16_support(flags)}; {args.seeds} seeds, miss {args.miss:g}")
    aic, aic_boxes, _ = arrays(read_aic(AIC)["annotations"], AIC14.num_joints)
    src, dst = joint_map(AIC14, COCO17)
    aic_sigmas = np.zeros(AIC14.num_joints)
    aic_sigmas[src] = np.asarray(COCO17.sigmas)[dst]
    with gzip.open(COCO_VAL, "rt") as f:
        coco, coco_boxes, coco_areas = arrays(json.load(f)["annotations"], COCO17.num_joints)
    sigmas = np.asarray(COCO17.sigmas)
    scales = {"box w x h (old)": aic_boxes[:, 2] * aic_boxes[:, 3], "0.53 x box (metric)": box_oks_area(aic_boxes)}
    print(f"{len(aic)} AI Challenger persons, {len(src)} shared joints; {len(coco)} COCO val persons")
    head = " | ".join(f"OKS < {t:g}" for t in THRESHOLDS)
    print(f"\n| k | fail | COCO val mean OKS | COCO val GT-box AP | AIC scale | AIC mean OKS | {head} |\n"
          "|---:|---:|---:|---:|---|---:|" + "---:|" * 3)
    for k, fail in ((k, f) for f in args.fail for k in args.k):
        coco_mean, coco_ap, counts, means = [], [], {s: [] for s in scales}, {s: [] for s in scales}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            pred = stand_in(coco, coco_boxes, sigmas, k, args.miss, fail, rng)
            oks = shared_joint_oks(pred, COCO17, coco, COCO17, coco_areas)
            coco_mean.append(np.nanmean(oks))
            coco_ap.append(np.mean([np.mean(oks[~np.isnan(oks)] > t) for t in np.linspace(0.5, 0.95, 10)]))
            pred = np.zeros((len(aic), COCO17.num_joints, 2))
            pred[:, dst] = stand_in(aic, aic_boxes, aic_sigmas, k, args.miss, fail, rng)[:, src]
            for name, areas in scales.items():
                oks = shared_joint_oks(pred, COCO17, aic, AIC14, areas)
                counts[name].append([int(hardest(oks, t).sum()) for t in THRESHOLDS])
                means[name].append(np.nanmean(oks))
        for name in scales:
            c = np.array(counts[name])
            cells = " | ".join(f"{m:,.0f} ± {s:.0f} ({m / len(aic):.1%})"
                               for m, s in zip(c.mean(0), c.std(0, ddof=1) if args.seeds > 1 else 0 * c[0]))
            print(f"| {k:g} | {fail:g} | {np.mean(coco_mean):.3f} | {np.mean(coco_ap):.3f} | {name} | "
                  f"{np.mean(means[name]):.3f} | {cells} |")


if __name__ == "__main__":
    main()
