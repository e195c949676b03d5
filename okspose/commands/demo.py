"""``okspose demo``: the whole system offline on synthetic people (see :mod:`okspose.recipe.demo`), or with
``--real`` on the real COCO persons and YOLOX-nano of ``--shared`` (see :mod:`okspose.recipe.real_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from okspose.recipe.demo import run_demo
from okspose.recipe.real_demo import run_real_demo


def run(args: argparse.Namespace) -> int:
    if args.real:
        run_real_demo(Path(args.out), Path(args.shared), config=args.config, overrides=args.overrides)
    else:
        run_demo(Path(args.out), config=args.config, overrides=args.overrides, with_detector=not args.no_detector)
    return 0
