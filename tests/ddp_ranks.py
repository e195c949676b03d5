"""Run by ``torchrun`` in test_train_equivalence: ``okspose``'s training on every rank, then each rank
saves the weights its model was built with and those it trained to ``<out>/rank<r>.pth`` (the engine
saves rank 0's trained weights only), so the test can compare the ranks.

Usage: torchrun ... tests/ddp_ranks.py OUT CONFIG [overrides...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import okspose.engine.train as engine
from okspose.config import load_config

built = []
_build_model = engine.build_model


def _clone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _recording_build_model(cfg, **kwargs):
    model = _build_model(cfg, **kwargs)
    built.append((model, _clone(model)))
    return model


if __name__ == "__main__":
    out, config, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    engine.build_model = _recording_build_model
    engine.train(load_config(config, overrides), device="cpu")
    assert len(built) == 1
    model, init = built[0]
    torch.save({"init": init, "trained": _clone(model), "parameters": [n for n, _ in model.named_parameters()]},
               out / f"rank{os.environ['RANK']}.pth")
