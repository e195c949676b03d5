"""``okspose reproduce``: Team OKS's experiment table on synthetic people (see :mod:`okspose.recipe.reproduce`)."""

from __future__ import annotations

import argparse

from okspose.recipe.reproduce import run_reproduce


def run(args: argparse.Namespace) -> int:
    result = run_reproduce(args.out, args.size, args.overrides)
    print("\n" + result["text"])
    print(f"wall time {result['seconds']['total'] / 60:.1f} min; everything is in {result['out']}")
    return 0
