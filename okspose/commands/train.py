"""``okspose train``: train a pose network from a config (one process, or every process under ``torchrun``)."""

from __future__ import annotations

import argparse

from okspose.engine.train import train
from okspose.run_config import load_run_config


def run(args: argparse.Namespace) -> int:
    train(load_run_config(args.config, args.overrides), resume=args.resume, device=args.device)
    return 0
