"""Compiled inference: ``torch.compile`` (inductor) of the folded pose network, with frozen weights.

Inductor's weight freezing turns the parameters into constants, so it can pre-pack the convolution
weights for oneDNN (and, under bf16 autocast, pre-convert them to bf16) once instead of on every call.
The network is compiled for one batch size (the pose batch, doubled by the flip test); a smaller batch
(the last of a run) is padded, a larger one split, so a run never recompiles.

Compiling costs time once per process; inductor's on-disk caches (FX graph and AOT autograd caches,
under :func:`inductor_cache_dir`) make a second run on the same machine start in a fraction of that time,
also for other weights of the same architecture (docs/benchmarks.md has the times). ``test.compile=auto``
therefore compiles only jobs large enough to repay the compile (:func:`should_compile`), and only where a
compiler is present.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from okspose.fileio import user_cache_dir
from okspose.models.hourglass import final_heatmaps

CompileSetting = Literal["auto", True, False]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]

# test.compile=auto compiles a job of at least this many persons (crops): the count from which HG-8's compile
# time is repaid by what compiling saves per person with the flip test, cold and with the graph in inductor's
# cache (docs/benchmarks.md, "Compiling": the times on the 2-core AVX512-BF16 EPYC these were set from).
AUTO_MIN_PERSONS = 200
AUTO_MIN_PERSONS_CACHED = 50


def _quiet_cuda_home_warning(device: torch.device) -> None:
    """On a CPU run, inductor's C++ build helper warns "No CUDA runtime is found" whenever a CUDA toolkit
    (nvcc) is on the machine; it says nothing about CPU code, so CPU runs do not print it."""
    if device.type == "cpu":
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def inductor_cache_dir() -> Path:
    """Where inductor keeps compiled graphs: ``$TORCHINDUCTOR_CACHE_DIR`` if set, else a per-user cache
    folder (``$XDG_CACHE_HOME/okspose/inductor``, default ``~/.cache/okspose/inductor``) instead of
    inductor's default under /tmp, which is lost at reboot."""
    return user_cache_dir("inductor", "TORCHINDUCTOR_CACHE_DIR")


def can_compile(device: torch.device) -> bool:
    """Whether inductor has what it needs here: a C++ compiler for CPU code, Triton for CUDA."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if c)


def compile_key(model: nn.Module, batch: int, input_size: tuple[int, int], amp_dtype: torch.dtype | None,
                mode: str, device: torch.device) -> str:
    """What decides whether inductor's cache already holds this compiled graph: the architecture (not the
    weights: frozen weights are bound again on a cache hit), the input shape, precision, mode, torch."""
    text = f"{torch.__version__}|{device.type}|{model}|{batch}|{input_size}|{amp_dtype}|{mode}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _marker(key: str) -> Path:
    return inductor_cache_dir() / "okspose-compiled" / key


def should_compile(setting: CompileSetting, persons: int, device: torch.device, key: str = "",
                   amp_dtype: torch.dtype | None = None) -> bool:
    """``test.compile`` for a job of ``persons`` crops: True always compiles; "auto" compiles, where
    :func:`can_compile`, jobs of at least :data:`AUTO_MIN_PERSONS` persons (:data:`AUTO_MIN_PERSONS_CACHED`
    when the graph of ``key`` was compiled here before) - except bf16 on a CPU without AMX, where the
    compiled graph measured no faster than eager bf16 (docs/benchmarks.md)."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cpu" and amp_dtype == torch.bfloat16 and not torch.cpu._is_amx_tile_supported():
        return False
    cached = bool(key) and _marker(key).exists()
    return persons >= (AUTO_MIN_PERSONS_CACHED if cached else AUTO_MIN_PERSONS) and can_compile(device)


class FinalHeatmaps(nn.Module):
    """The network's last-stack heatmaps only: one tensor out (what compiled and exported graphs return)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return final_heatmaps(self.net(x))


class FixedBatch(nn.Module):
    """Runs ``net`` at exactly ``batch`` inputs: smaller batches are zero-padded, larger ones split, so a
    graph compiled for one shape serves every call."""

    def __init__(self, net: nn.Module, batch: int, marker: Path | None = None) -> None:
        super().__init__()
        self.net, self.batch, self.marker = net, batch, marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for part in x.split(self.batch):
            n = len(part)
            if n < self.batch:
                pad = part.new_zeros((self.batch - n, *part.shape[1:]))
                part = torch.cat([part, pad]).contiguous(memory_format=_memory_format(x))
            outs.append(self.net(part)[:n])
            if self.marker is not None:  # the first call compiled: inductor's cache holds the graph now
                self.marker.parent.mkdir(parents=True, exist_ok=True)
                self.marker.touch()
                self.marker = None
        return torch.cat(outs)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format


def compile_for_inference(model: nn.Module, batch: int, mode: CompileMode = "default", key: str = "") -> nn.Module:
    """``model`` (an eval-mode, folded network) compiled by inductor with frozen weights for batches of
    ``batch``; returns the last-stack heatmaps. Compilation happens on the first call, after which the
    graph's ``key`` (:func:`compile_key`) is marked as cached.

    ``mode`` is torch.compile's: on CUDA "reduce-overhead" adds CUDA graphs (the fixed batch suits them)
    and "max-autotune" also benchmarks kernel choices; on CPU "default" is the one to use.
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
    _quiet_cuda_home_warning(next(model.parameters()).device)
    options = dict(torch._inductor.list_mode_options(mode))
    options["freezing"] = True
    compiled = torch.compile(FinalHeatmaps(model.eval()), options=options, dynamic=False)
    return FixedBatch(compiled, batch, _marker(key) if key else None)
