"""``okspose mine-hard``: the hardest persons of an external set for a COCO-trained model (see
:mod:`okspose.recipe.mine`)."""

from __future__ import annotations

import argparse

from okspose.distributed import cleanup, init_distributed
from okspose.recipe.mine import format_summary, run_mine_hard


def run(args: argparse.Namespace) -> int:
    info = init_distributed(args.device)
    try:
        summary = run_mine_hard(args.checkpoint, args.data, args.out, args.oks_thr, args.fraction, args.images,
                                args.dataset, args.overrides, info)
    finally:
        cleanup(info)
    if info.is_main:
        print(format_summary(summary))
    return 0
