"""Which engine and precision run the pose network: ``test.engine=auto``'s rule as a pure function of the
machine's facts, so that tests cover every kind of CPU (and CUDA) on whichever machine runs them.

The rule, per device (figures behind it: docs/benchmarks.md, one table per CPU kind):

- CPUs with native bf16 (AMX or AVX512-BF16): the folded network in bf16, its first and last layers in
  fp32 (:func:`okspose.inference.runtime.optimize_for_inference`), several times any fp32 engine there.
- CPUs without it (AVX2 only; bf16 emulated, slower than fp32): ONNX Runtime in fp32, the fastest fp32
  engine measured, where ``onnxruntime`` is installed and its first call pays; else the folded network.
- CUDA: the folded network under autocast (bf16 where the GPU has it, else fp16).

Explicit settings win: ``test.engine`` other than ``auto``, ``test.amp`` other than ``auto`` (fp32 on a
native-bf16 CPU then takes ONNX Runtime like any fp32 run), and ``test.fast=false`` (the network as
trained, the accuracy reference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

DeviceKind = Literal["cpu", "cuda"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]

# Without a cached graph, test.engine=auto takes ONNX Runtime for a job of at least this many crops (persons,
# twice with the flip test): the count after which exporting HG-8 and opening its session is repaid by what
# ONNX Runtime saves per crop against the folded network in fp32 (docs/benchmarks.md, the AVX2-only EPYC).
# Export time and the saving per crop both grow with the number of stacks, so one count serves HG-2 as well.
AUTO_ONNX_MIN_CROPS = 160


@dataclass(frozen=True)
class EngineChoice:
    """What runs the crops, and why; printed once per run and kept in the results' summary JSON."""

    engine: Literal["torch", "onnxruntime", "onnxruntime-int8"]
    precision: Precision
    folded: bool  # BatchNorm folded into the convs, channels_last
    reason: str
    compiled: bool = False  # torch only: torch.compile (test.compile)

    def line(self) -> str:
        how = ", ".join([self.engine, *(["folded"] if self.folded else []),
                         *(["compiled"] if self.compiled else []), self.precision])
        return f"pose engine: {how} ({self.reason})"

    def as_dict(self) -> dict:
        return asdict(self)


def _amp_precision(amp: str, device: DeviceKind, native_bf16: bool) -> Precision:
    """``test.amp`` as a precision: auto is bf16 where the device has native bf16, else fp16 on CUDA and
    fp32 on CPUs (the same rule as :func:`okspose.inference.runtime.resolve_amp`)."""
    if amp == "auto":
        return "bf16" if native_bf16 else ("fp16" if device == "cuda" else "fp32")
    return {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}[amp]


def choose_engine(device: DeviceKind, native_bf16: bool, onnxruntime: bool, cached: bool, crops: int,
                  engine: str = "auto", amp: str = "auto", fast: bool = True) -> EngineChoice:
    """The engine for a job of ``crops`` crops.

    Args:
        device: where the network runs.
        native_bf16: the device computes bf16 natively (CPU: AMX or AVX512-BF16; CUDA: the GPU's bf16).
        onnxruntime: onnxruntime (and the exporter) can be imported.
        cached: the network's fp32 ONNX graph is in the on-disk cache (no export to pay).
        crops: crops of the first job (persons, twice with the flip test).
        engine, amp, fast: ``test.engine``, ``test.amp``, ``test.fast``.
    """
    precision = _amp_precision(amp, device, native_bf16)
    if engine == "onnxruntime":
        return EngineChoice("onnxruntime", "fp32", True, "test.engine=onnxruntime")
    if engine == "onnxruntime-int8":
        return EngineChoice("onnxruntime-int8", "int8", True, "test.engine=onnxruntime-int8; first and last "
                            "layers in fp32")
    if engine == "torch" or not fast:
        why = "test.engine=torch" if engine == "torch" else "test.fast=false: the network as trained"
        return EngineChoice("torch", precision, fast, why)
    if device == "cuda":
        return EngineChoice("torch", precision, True, "CUDA: the folded network under autocast" if amp == "auto"
                            else f"CUDA, test.amp={amp}")
    if precision != "fp32":
        why = ("native bf16 on this CPU: first and last layers in fp32" if amp == "auto"
               else f"test.amp={amp}: ONNX Runtime runs fp32 only")
        return EngineChoice("torch", precision, True, why)
    fp32_why = "no native bf16 on this CPU" if amp == "auto" else "test.amp=none"
    if not onnxruntime:
        return EngineChoice("torch", "fp32", True, f"{fp32_why}; onnxruntime is not installed "
                            "(pip install 'okspose[onnx]' for the faster fp32 engine)")
    if cached:
        return EngineChoice("onnxruntime", "fp32", True, f"{fp32_why}; the exported graph is cached")
    if crops >= AUTO_ONNX_MIN_CROPS:
        return EngineChoice("onnxruntime", "fp32", True, f"{fp32_why}; {crops} crops repay the ONNX export")
    return EngineChoice("torch", "fp32", True, f"{fp32_why}; {crops} crops would not repay the ONNX export "
                        f"(from {AUTO_ONNX_MIN_CROPS}, or once the graph is cached)")
