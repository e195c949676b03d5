"""``okspose test``: pose the val split with ground-truth boxes, a detections file or a detector, rescore and
suppress, write one COCO results file and a summary, print the COCO stats over every val image.

Under ``torchrun`` the images are sharded across ranks and the poses gathered on rank 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from okspose.distributed import cleanup, init_distributed
from okspose.evaluation import format_stats
from okspose.fileio import check_writable
from okspose.inference.boxes import BoxSource
from okspose.inference.poser import Poser
from okspose.inference.scoring import run_test
from okspose.run_config import command_config


def run(args: argparse.Namespace) -> int:
    cfg, checkpoint = command_config(args.config, args.overrides, args.checkpoint, args.engine)
    source = BoxSource.choose(args.detections, args.detector, args.detector_weights)
    default = "results_gt_boxes.json" if source.is_gt else "results.json"
    out = Path(args.out) if args.out else Path(cfg.train.output_dir) / default
    check_writable(out, "results file")
    if args.vis:
        check_writable(args.vis, "pictures folder")
    info = init_distributed(args.device)
    try:
        poser = Poser.from_checkpoint(cfg, checkpoint, info.device)
        evaluation = run_test(poser, cfg, source, out, info, vis_dir=args.vis)
    finally:
        cleanup(info)
    if evaluation is not None:
        print(f"{source.describe()}: wrote {out} ({evaluation.images} images)")
        print(format_stats(evaluation.stats))
        if evaluation.skip_line():
            print(evaluation.skip_line())
    return 0
