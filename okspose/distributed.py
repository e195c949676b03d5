"""torch.distributed set-up for ``torchrun`` (NCCL on GPUs, gloo on CPUs) and helpers around it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from okspose.errors import OksposeError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def use_cuda(device: str = "auto") -> bool:
    """Whether ``device`` ("auto": CUDA when available, "cuda" or "cpu") runs on CUDA; "cuda" on a machine
    without it is an :class:`OksposeError`."""
    if device not in ("auto", "cpu", "cuda"):
        raise OksposeError(f"device must be auto, cpu or cuda, got {device!r}")
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise OksposeError("device cuda asked for, but CUDA is not available on this machine (use cpu or auto)")
    return cuda


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in RANK/WORLD_SIZE/LOCAL_RANK, if any.

    ``device``: "auto" (CUDA when available), "cuda" or "cpu". Each process drives one GPU.
    """
    cuda = use_cuda(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device=torch.device("cuda", 0) if cuda else torch.device("cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    dev = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return DistInfo(rank, world, local_rank, dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item())


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose batch statistics span all processes, on any device.

    torch's SyncBatchNorm runs on GPUs only; this one shares per-process moments with a differentiable
    all-reduce, so gloo/CPU training matches one process with the whole batch (up to float summation order).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        xf = x.float()
        mean, var, n = _global_moments(xf)
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        y = (xf - mean.view(1, -1, 1, 1)) * torch.rsqrt(var.view(1, -1, 1, 1) + self.eps)
        y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def _global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of ``x`` (N, C, H, W) over every process, and the count.

    Each process contributes its count, mean and M2 (sum of squared deviations from its own mean), combined
    with Chan et al.'s parallel formula: E[x^2] - E[x]^2 cancels in fp32 to garbage (negative, so NaN) on
    activations whose mean is large next to their spread. One all-reduce of a (world, 2C + 1) table in which
    each process fills its own row stands in for a differentiable all-gather.
    """
    c = x.shape[1]
    count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
    shift = x[:1, :, :1, :1].detach()  # one sample per channel: the mean of x - shift sums small numbers
    offset = (x - shift).mean((0, 2, 3))
    local_mean = shift.view(-1) + offset
    m2 = (x - shift - offset.view(1, -1, 1, 1)).square().sum((0, 2, 3))
    own_row = F.one_hot(torch.tensor(dist.get_rank()), dist.get_world_size()).to(x).view(-1, 1)
    table = _AllReduceSum.apply(own_row * torch.cat([local_mean, m2, count]).view(1, -1))
    means, m2s, counts = table[:, :c], table[:, c : 2 * c], table[:, 2 * c :]
    n = counts.sum()
    mean = (counts * means).sum(0) / n
    var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / n
    return mean, var, n


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Swap every BatchNorm2d for a synchronised one (torch's on CUDA, :class:`CpuSyncBatchNorm` else)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, CpuSyncBatchNorm):
            sync = CpuSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            sync.load_state_dict(child.state_dict())
            setattr(model, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return model


def shard(items: list, info: DistInfo) -> list:
    """This rank's share of ``items`` (every world_size-th item, starting at its rank)."""
    return items[info.rank :: info.world_size]


def gather_lists(items: list, info: DistInfo) -> list:
    """Concatenation of every rank's ``items`` on every rank (picklable items)."""
    if not info.distributed:
        return items
    parts: list[list] = [[] for _ in range(info.world_size)]
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]
