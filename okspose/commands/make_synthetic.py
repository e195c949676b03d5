"""``okspose make-synthetic``: the procedurally generated people scenes in COCO format, optionally with false
annotations in the train split and an external set in the AI Challenger layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from okspose.data.corruption import corrupt_coco_file
from okspose.data.synthetic import generate_synthetic_coco
from okspose.data.synthetic_aic import generate_synthetic_aic
from okspose.fileio import check_writable


def run(args: argparse.Namespace) -> int:
    check_writable(args.out, "output folder")
    for split, n, offset in (("train", args.train, 0), ("val", args.val, 1)):
        path = generate_synthetic_coco(args.out, split, n, seed=args.seed * 2 + offset,
                                       image_size=(args.width, args.height), max_people=args.max_people)
        print(f"wrote {n} images: {path}")
        if split == "train" and args.corrupt:
            clean, record = corrupt_coco_file(path, args.corrupt, seed=args.seed)
            print(f"corrupted {args.corrupt:.0%} of the train persons' keypoints: clean labels {clean}, "
                  f"record {record}")
    if args.aic:
        path = generate_synthetic_aic(Path(args.out) / "aic", args.aic, seed=args.seed)
        print(f"wrote {args.aic} AI Challenger-layout images: {path}")
    return 0
