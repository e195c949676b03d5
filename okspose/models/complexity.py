"""Parameter and compute counts for model cards and ``okspose model-info``.

Convention: ``macs`` are multiply-accumulates of convolutions and matrix products, the figure papers
usually quote as "FLOPs" for pose networks (e.g. "HG-8: ~26 GFLOPs"); ``flops`` = 2 x ``macs``, which
is what :class:`torch.utils.flop_counter.FlopCounterMode` reports. BatchNorm, ReLU, pooling,
upsampling and additions are not counted (they are a few percent and memory-bound, not compute-bound).
Counts are per input of ``input_shape``; use batch 1 for "per person" figures. The same forward pass
gives the network's real output shape (its last output, for networks that return one per stack).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from okspose.models.hourglass import final_heatmaps


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    flops: int
    output_shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"params {self.params / 1e6:.2f}M, {self.macs / 1e9:.2f} GMACs, {self.flops / 1e9:.2f} GFLOPs"


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 256, 256)) -> int:
    """FLOPs (2 x MACs) of one forward pass on a zero input of ``input_shape``."""
    return _forward_counts(model, input_shape)[0]


def _forward_counts(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """FLOPs of one forward pass on a zero input of ``input_shape``, and the output's shape.

    The model runs in eval mode under ``no_grad`` so BatchNorm running statistics are left untouched;
    its train/eval mode is restored afterwards.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.zeros(input_shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops(), tuple(final_heatmaps(out).shape)


def measure_complexity(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 256, 256)) -> Complexity:
    flops, output_shape = _forward_counts(model, input_shape)
    return Complexity(params=count_parameters(model), macs=flops // 2, flops=flops, output_shape=output_shape)
