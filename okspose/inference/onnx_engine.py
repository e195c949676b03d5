"""The folded pose network as ONNX, and ONNX Runtime as an inference engine for it.

The graph takes normalised float32 crops ``input`` [batch, 3, H, W] (batch dynamic) and returns the
last stack's heatmaps ``heatmaps`` [batch, K, H/4, W/4]; input normalisation and the flip test stay in
okspose (:mod:`okspose.inference.runtime`), so an ONNX engine is a drop-in for the PyTorch network. Exported with
``torch.onnx.export(dynamo=True)`` (``torch.export`` underneath; needs ``onnxscript``), the exporter
PyTorch develops; the TorchScript one is deprecated. Needs the ``onnx`` extra
(``pip install okspose[onnx]``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from okspose.errors import OksposeError
from okspose.inference.compiled import FinalHeatmaps
from okspose.models.fuse import fold_batchnorm

INPUT, OUTPUT = "input", "heatmaps"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise OksposeError(f"the ONNX engine needs the '{module}' package: pip install 'okspose[onnx]' "
                           f"(onnx, onnxruntime, onnxscript)") from None


def export_onnx(model: nn.Module, input_size: tuple[int, int], out: str | Path | None = None) -> bytes:
    """The ONNX model (bytes; also written to ``out`` when given) of ``model`` with BatchNorm folded, in
    eval mode, with a dynamic batch axis. ``input_size`` is the crop's (w, h)."""
    _require("onnxscript")
    net = FinalHeatmaps(fold_batchnorm(model).float()).eval()
    w, h = input_size
    example = torch.zeros(2, 3, h, w)
    with warnings.catch_warnings():  # the exporter's progress notes and deprecation chatter
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (example,), input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True,
                                    verbose=False)
    data = program.model_proto.SerializeToString()
    if out is not None:
        from okspose.fileio import atomic_write

        atomic_write(out, lambda f: f.write(data))
    return data


class OnnxRuntimeNet:
    """An ONNX pose graph run by ONNX Runtime on the CPU, called like the PyTorch network: normalised
    float32 crops (torch) in, last-stack heatmaps (torch, float32) out."""

    def __init__(self, onnx_model: bytes | str | Path, threads: int | None = None) -> None:
        ort = _require("onnxruntime")
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
        """Export ``model`` (in memory) and load it into ONNX Runtime."""
        return cls(export_onnx(model, input_size))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        (out,) = self.session.run([OUTPUT], {INPUT: array})
        return torch.from_numpy(out).to(x.device)
