"""The folded pose network as ONNX, and ONNX Runtime as an inference engine for it.

The graph takes normalised float32 crops ``input`` [batch, 3, H, W] (batch dynamic) and returns the
last stack's heatmaps ``heatmaps`` [batch, K, H/4, W/4]; input normalisation and the flip test stay in
okspose (:mod:`okspose.inference.runtime`), so an ONNX engine is a drop-in for the PyTorch network. Exported with
``torch.onnx.export(dynamo=True)`` (``torch.export`` underneath; needs ``onnxscript``), the exporter
PyTorch develops; the TorchScript one is deprecated. Needs the ``onnx`` extra
(``pip install okspose[onnx]``).

Exporting costs tens of seconds for HG-8 on a 2-core CPU, so the exported graph is kept in an on-disk cache
(:func:`onnx_cache_dir`) under a key of the folded weights and the export settings (:func:`graph_key`):
a second run of the same weights opens the cached file instead of exporting again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from okspose.errors import OksposeError
from okspose.fileio import atomic_write, user_cache_dir
from okspose.inference.compiled import FinalHeatmaps
from okspose.models.fuse import fold_batchnorm

INPUT, OUTPUT = "input", "heatmaps"
CACHE_ENV = "OKSPOSE_ONNX_CACHE"
CACHE_KEEP = 8  # graphs kept in the cache, newest used first: validation during training adds one per epoch


def require_onnx(module: str):
    """``module`` of the ``onnx`` extra, imported, or a one-line error saying how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise OksposeError(f"the ONNX engine needs the '{module}' package: pip install 'okspose[onnx]' "
                           f"(onnx, onnxruntime, onnxscript)") from None


def export_onnx(model: nn.Module, input_size: tuple[int, int], out: str | Path | None = None) -> bytes:
    """The ONNX model (bytes; also written to ``out`` when given) of ``model`` with BatchNorm folded, in
    eval mode, with a dynamic batch axis. ``input_size`` is the crop's (w, h). Exported from a CPU copy: ONNX
    Runtime runs on the CPU whatever device ``model`` is on."""
    require_onnx("onnxscript")
    net = FinalHeatmaps(fold_batchnorm(model).float().cpu()).eval()
    w, h = input_size
    example = torch.zeros(2, 3, h, w)
    with warnings.catch_warnings():  # the exporter's progress notes and deprecation chatter
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (example,), input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True,
                                    verbose=False)
    data = program.model_proto.SerializeToString()
    if out is not None:
        atomic_write(out, lambda f: f.write(data))
    return data


def onnx_available() -> bool:
    """Whether this environment can export and run ONNX graphs (the ``onnx`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))


def onnx_cache_dir() -> Path:
    """The exported graphs' cache: ``$OKSPOSE_ONNX_CACHE``, else ``~/.cache/okspose/onnx``."""
    return user_cache_dir("onnx", CACHE_ENV)


def graph_key(model: nn.Module, input_size: tuple[int, int], variant: str = "fp32") -> str:
    """The cache key of ``model``'s graph: a hash of its weights with BatchNorm folded (so the folded and
    the unfolded network share one key), the input size, the exporter's versions and ``variant`` (what
    was done to the graph after export, e.g. INT8 quantization and its calibration)."""
    digest = hashlib.sha256(f"{torch.__version__}|{_version('onnxscript')}|{input_size}|{variant}".encode())
    for tensor in fold_batchnorm(model).state_dict().values():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{t.dtype}{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def cached_graph(key: str) -> Path | None:
    """The cached graph of ``key``, marked as just used, or None."""
    path = onnx_cache_dir() / f"{key}.onnx"
    if not path.is_file():
        return None
    path.touch()
    return path


def store_graph(key: str, data: bytes) -> None:
    """Keep ``data`` as the graph of ``key`` (written atomically), dropping all but the :data:`CACHE_KEEP`
    most recently used graphs. A cache that cannot be written costs the next run an export, nothing else."""
    folder = onnx_cache_dir()
    try:
        atomic_write(folder / f"{key}.onnx", lambda f: f.write(data))
        graphs = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in graphs[CACHE_KEEP:]:
            old.unlink(missing_ok=True)
    except OSError as err:
        print(f"note: cannot keep the ONNX graph in {folder} ({err.strerror}); the next run exports it again",
              file=sys.stderr)


def fp32_graph(model: nn.Module, input_size: tuple[int, int], key: str) -> bytes | Path:
    """``model``'s fp32 graph: the cached file of ``key`` (:func:`graph_key`), else exported and cached."""
    hit = cached_graph(key)
    if hit is not None:
        return hit
    data = export_onnx(model, input_size)
    store_graph(key, data)
    return data


class OnnxRuntimeNet:
    """An ONNX pose graph run by ONNX Runtime on the CPU, called like the PyTorch network: normalised
    float32 crops (torch) in, last-stack heatmaps (torch, float32) out."""

    def __init__(self, onnx_model: bytes | str | Path, threads: int | None = None) -> None:
        ort = require_onnx("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            where = "" if isinstance(onnx_model, bytes) else f"{onnx_model}: "
            raise OksposeError(f"{where}ONNX Runtime cannot load this model ({str(err)[:200]})") from None

    @classmethod
    def from_model(cls, model: nn.Module, input_size: tuple[int, int]) -> OnnxRuntimeNet:
        """Export ``model`` (in memory, no cache) and load it into ONNX Runtime."""
        return cls(export_onnx(model, input_size))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        (out,) = self.session.run([OUTPUT], {INPUT: array})
        return torch.from_numpy(out).to(x.device)
