"""Running a pose network on batches of crops: input normalisation, mixed precision, flip test."""

from __future__ import annotations

import contextlib
from typing import Literal

import numpy as np
import torch
from torch import nn

from okspose.data.codec import flip_heatmaps
from okspose.models.fuse import fold_batchnorm
from okspose.models.hourglass import StackedHourglass, final_heatmaps

AmpMode = Literal["auto", "none", "bf16", "fp16"]

# ImageNet statistics on the 0-255 scale: crops travel as uint8 (4x less to copy) and are
# normalised on the device.
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def fast_bf16_cpu() -> bool:
    """True where the CPU has native bf16 matrix units (AMX or AVX512-BF16)."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_amp(amp: AmpMode, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full fp32), for training and inference alike.

    On CPUs "auto" picks bf16 wherever bf16 is native (AMX or AVX512-BF16), where it trains and poses
    several times faster than fp32 (docs/benchmarks.md); where it is emulated (AVX2 only) bf16 is slower
    than fp32, so fp32.
    """
    if amp == "auto":
        if device.type == "cuda":  # bf16 needs no grad scaler; fp16 (older GPUs) trains with one
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if fast_bf16_cpu() else None
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class Float32(nn.Module):
    """Runs ``module`` in float32 inside an autocast region: its input is cast up, its output stays float32.

    The device type is fixed when it is built (not read from the input) so the module stays traceable by
    ``torch.fx``, which :func:`~okspose.models.fuse.fold_batchnorm` uses on an already optimised network.
    """

    def __init__(self, module: nn.Module, device_type: str):
        super().__init__()
        self.module = module
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, enabled=False):
            return self.module(x.float())


def optimize_for_inference(model: StackedHourglass, device: torch.device) -> nn.Module:
    """The speed mode: an eval copy with BatchNorm folded into the convs (in fp32, before any autocast
    rounds the weights), the model's ``float32_layers`` kept in float32, in channels_last on ``device``.

    Combine with ``resolve_amp("auto", device)`` to add fp16 on GPUs and bf16 on CPUs with native bf16; on
    CPUs without it (AVX2 only) bf16 autocast is several times slower than fp32, so "auto" keeps fp32.
    """
    fused = fold_batchnorm(model)
    for name in model.float32_layers():
        fused.set_submodule(name, Float32(fused.get_submodule(name), device.type))
    return fused.to(device).to(memory_format=torch.channels_last)


def normalize_images(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 [B, 3, H, W] RGB crops -> normalised float32 on ``device``."""
    x = images.to(device, non_blocking=True).float()
    x = (x - _MEAN.to(device)) / _STD.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.inference_mode()
def predict_heatmaps(
    model: nn.Module,
    images: torch.Tensor,
    flip_index: np.ndarray | None = None,
    amp_dtype: torch.dtype | None = None,
    max_crops: int = 0,
) -> torch.Tensor:
    """Final-stack heatmaps (float32) for normalised crops; with ``flip_index``, averaged with the
    heatmaps of the mirrored crops (one batch of 2B for both). ``max_crops`` > 0 runs the network on
    parts of at most that many crops (faster on CPUs whose caches do not hold a large batch)."""
    batch = torch.cat([images, images.flip(-1)]) if flip_index is not None else images
    parts = batch.split(max_crops) if max_crops > 0 else (batch,)
    with autocast(images.device, amp_dtype):
        heatmaps = torch.cat([final_heatmaps(model(part)) for part in parts]).float()
    if flip_index is None:
        return heatmaps
    plain, mirrored = heatmaps.chunk(2)
    return (plain + flip_heatmaps(mirrored, flip_index)) / 2
