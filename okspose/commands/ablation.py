"""``okspose ablation``: Team OKS's ablation tables (instance score, NMS steps, ground-truth boxes, data
rows) on the val split, printed as markdown and optionally written to a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from okspose.checkpoints import Checkpoint
from okspose.distributed import cleanup, init_distributed
from okspose.errors import OksposeError
from okspose.fileio import save_text
from okspose.inference.ablation import run_ablation_tables
from okspose.inference.boxes import BoxSource
from okspose.run_config import command_config


def named_checkpoint(text: str) -> tuple[str, Checkpoint]:
    """``NAME=CKPT`` of ``--row``, the checkpoint read (so a bad one stops before any posing)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise OksposeError(f"--row {text!r}: expected NAME=CHECKPOINT")
    return name, Checkpoint.read(path)


def run(args: argparse.Namespace) -> int:
    rows = [named_checkpoint(r) for r in args.row]
    cfg, checkpoint = command_config(args.config, args.overrides, args.checkpoint, args.engine)
    source = BoxSource.choose(args.detections, args.detector, args.detector_weights)
    info = init_distributed(args.device)
    try:
        text = run_ablation_tables(cfg, checkpoint, source, info, with_gt=not args.no_gt, rows=rows)
    finally:
        cleanup(info)
    if text is not None:
        print(text)
        if args.out:
            save_text(text, Path(args.out))
    return 0
