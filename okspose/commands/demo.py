"""``okspose demo``: the whole system offline on synthetic people (see :mod:`okspose.recipe.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from okspose.recipe.demo import run_demo


def run(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), config=args.config, overrides=args.overrides, with_detector=not args.no_detector)
    return 0
