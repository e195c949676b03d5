"""Heatmap regression loss with intermediate supervision."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class JointsMSELoss(nn.Module):
    """Weighted MSE between predicted and target heatmaps, summed over hourglass stacks.

    Per stack the loss is ``mean over B*J*h*w of w[b, j] * (pred - target)**2``: the mean runs over
    all joints, annotated or not, so the loss scale does not depend on how many joints a batch has
    labelled (a joint with weight 0 simply adds zero). Stacks are summed, not averaged, as in the
    paper's intermediate supervision, so each stack gets the same gradient scale as a single-stack model.

    Joints with weight 0 are masked out with ``torch.where`` before squaring, so their heatmap channels
    get an exactly zero gradient even if a prediction there is inf/NaN. The loss is computed in fp32
    whatever the output dtype (bf16 under autocast).
    """

    def forward(self, outputs: list[Tensor] | Tensor, target: Tensor, target_weight: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            outputs = [outputs]
        if not outputs:
            raise ValueError("need at least one heatmap tensor")
        target = target.float()
        b, j = target.shape[:2]
        weight = target_weight.float().reshape(b, j, 1, 1)  # accepts [B, J] or [B, J, 1]
        mask = weight > 0
        total = torch.zeros((), device=target.device)
        for pred in outputs:
            if pred.shape != target.shape:
                raise ValueError(f"heatmap shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
            diff = torch.where(mask, pred.float() - target, 0.0)
            total = total + (weight * diff.square()).mean()
        return total
