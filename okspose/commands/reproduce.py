"""``okspose reproduce``: Team OKS's experiment table on synthetic people over seeds (see
:mod:`okspose.recipe.reproduce`), or their stages on the real data sets (``--data real``, see
:mod:`okspose.recipe.real`)."""

from __future__ import annotations

import argparse

from okspose.errors import OksposeError
from okspose.recipe.real import RealData, run_real
from okspose.recipe.reproduce import EXTERNAL_RATIOS, run_reproduce


def run(args: argparse.Namespace) -> int:
    if args.data == "real":
        return run_real_data(args)
    if args.seeds is not None and args.seeds < 1:
        raise OksposeError(f"--seeds must be at least 1, got {args.seeds}")
    ratios = tuple(args.external_ratio or EXTERNAL_RATIOS)
    if min(ratios) <= 0:
        raise OksposeError(f"--external-ratio must be above 0, got {' '.join(f'{r:g}' for r in ratios)}")
    if args.val_images is not None and args.val_images < 1:
        raise OksposeError(f"--val-images must be at least 1, got {args.val_images}")
    result = run_reproduce(args.out, args.size, args.overrides, args.seeds, ratios, args.val_images)
    print("\n" + result["text"])
    print(f"wall time {result['seconds']['total'] / 60:.1f} min; everything is in {result['out']}")
    return 0


def run_real_data(args: argparse.Namespace) -> int:
    missing = [flag for flag, value in (("--coco-root", args.coco_root), ("--aic-root", args.aic_root),
                                        ("--detections", args.detections)) if value is None]
    if missing:
        raise OksposeError(f"--data real needs {', '.join(missing)}")
    if args.seeds is not None or args.external_ratio is not None or args.val_images is not None:
        raise OksposeError("--seeds, --external-ratio and --val-images are settings of the synthetic proxy, not of "
                           "--data real")
    data = RealData(args.coco_root, args.aic_root, args.detections, args.aic_ann, args.aic_images)
    result = run_real(args.out, data, args.config, args.overrides, args.mine_oks_thr, args.device)
    if result is not None:
        print("\n" + result["text"])
        print(f"wall time {result['seconds']['total'] / 60:.1f} min; everything is in {result['out']}")
    return 0
