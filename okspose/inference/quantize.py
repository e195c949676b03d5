"""INT8 pose networks: ONNX Runtime's static quantization of the folded network's ONNX graph.

QDQ format (the one ONNX Runtime's CPU kernels are tuned for), weights per output channel, activations
uint8 with ranges calibrated on crops of real persons apart from those INT8 is checked and scored on
(:class:`Calibration`). The first conv (it sees the normalised pixels) and the last heatmap conv (sub-pixel
decoding takes logs of its outputs) stay in fp32, as they stay in fp32 under bf16
(:meth:`okspose.models.hourglass.StackedHourglass.float32_layers`). On x86 CPUs without VNNI the weights
take 7 bits (``reduce_range``), which keeps ONNX Runtime's u8 x s8 products from saturating its 16-bit sums
there. Needs the ``onnx`` extra.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from okspose.config import Config, build_schema
from okspose.data.build import build_records
from okspose.data.crops import ImageCrops
from okspose.data.records import PersonRecords, load_person_records
from okspose.errors import ConfigError, OksposeError
from okspose.inference.onnx_engine import (
    INPUT,
    OUTPUT,
    cached_graph,
    fp32_graph,
    graph_key,
    require_onnx,
    store_graph,
)
from okspose.inference.runtime import normalize_images

CALIBRATION_BATCH = 8  # crops per calibration pass
# What is quantized: the convs and what lies between them (ReLUs, sums, pooling, upsampling). The pre-activation
# BatchNorms, which follow a sum and cannot be folded, have no INT8 kernel and stay fp32.
QUANTIZED_OPS = ["Conv", "Relu", "Add", "MaxPool", "Resize"]


def person_crops(cfg: Config, records: PersonRecords) -> torch.Tensor | None:
    """Normalised float32 crops [M, 3, H, W] of ``records``' persons whose pictures read (None if none do)."""
    dataset = ImageCrops(records, cfg.data.input_size, cfg.data.padding, on_error="skip")
    crops = [item["image"] for item in (dataset[i] for i in range(len(dataset))) if "image" in item]
    return normalize_images(torch.cat(crops), torch.device("cpu")) if crops else None


def val_records(cfg: Config) -> PersonRecords | None:
    """The config's val persons, or None where its val split is not on this machine."""
    return build_records(cfg, "val") if cfg.data_path("val_ann").is_file() else None


def first_persons(records: PersonRecords, persons: int) -> PersonRecords:
    """The first ``persons`` of ``records`` (all where fewer): the same persons on every run."""
    return records.subset(np.arange(min(persons, len(records))))


@dataclass(frozen=True)
class Calibration:
    """INT8 calibration: the first ``persons`` persons (``test.int8_calibration``) of a set apart from the one
    INT8 is scored on, so the activation ranges are not fitted to the persons the metric then counts. The set
    is the training split (``data.train_ann``) unless ``test.int8_calibration_ann`` names another."""

    cfg: Config
    persons: int

    @property
    def ann(self) -> Path:
        t = self.cfg.test
        return self.cfg.data_path("train_ann") if not t.int8_calibration_ann else \
            Path(self.cfg.data.root) / t.int8_calibration_ann

    @functools.cached_property
    def records(self) -> PersonRecords:
        """The calibration persons (read once)."""
        t = self.cfg.test
        if not self.ann.is_file():
            raise OksposeError(f"INT8 calibration needs the persons of {self.ann}, which cannot be read here "
                               "(set data.root, data.train_ann or test.int8_calibration_ann)")
        if not t.int8_calibration_ann:
            return first_persons(build_records(self.cfg, "train"), self.persons)
        images = Path(self.cfg.data.root) / t.int8_calibration_images
        return first_persons(load_person_records(self.ann, images, build_schema(self.cfg), self.cfg.data.on_error),
                             self.persons)

    def images(self) -> set[Path]:
        """The pictures calibration reads."""
        return {Path(p).resolve() for p in self.records.image_paths}

    def crops(self) -> torch.Tensor:
        crops = person_crops(self.cfg, self.records)
        if crops is None:
            raise OksposeError(f"INT8 calibration: no picture of the first {self.persons} persons of {self.ann} "
                               "could be read")
        return crops

    def check_apart(self, scored: Iterable[str], what: str) -> None:
        """Refuse to score the pictures ``scored`` (``what`` names their set) when calibration read any of
        them, unless ``test.int8_calibration_overlap`` allows it."""
        if self.cfg.test.int8_calibration_overlap:
            return
        shared = self.images() & {Path(p).resolve() for p in scored}
        if shared:
            raise ConfigError(f"INT8 calibration on {self.ann} reads {len(shared)} pictures of the scored {what} "
                              f"(e.g. {min(shared)}): calibrate on another set (test.int8_calibration_ann) or "
                              "allow it with test.int8_calibration_overlap=true")

    def describe(self) -> str:
        """What decides the calibration crops, for the cache key: the persons' pictures and boxes, the crop."""
        digest = hashlib.sha256("|".join(self.records.image_paths).encode())
        digest.update(np.ascontiguousarray(self.records.boxes, dtype=np.float64).tobytes())
        return f"{digest.hexdigest()}|{len(self.records)} persons|{self.cfg.data.input_size}|{self.cfg.data.padding}"


def has_vnni() -> bool:
    """Whether the CPU has VNNI (8-bit dot products without 16-bit intermediate sums); False where unknown."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def float_nodes(graph) -> list[str]:
    """The names of the first conv and of the conv that writes the heatmaps: kept in fp32."""
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    last = [n for n in convs if OUTPUT in n.output]
    if not convs or not last:
        raise OksposeError(f"not a pose graph: no conv writes its '{OUTPUT}' output")
    return [convs[0].name, last[0].name]


class _CropsReader:
    """ONNX Runtime's calibration data reader (duck-typed: ``get_next``) over crops, a few at a time."""

    def __init__(self, crops: torch.Tensor) -> None:
        self.parts = [np.ascontiguousarray(p.float().numpy()) for p in crops.split(CALIBRATION_BATCH)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return {INPUT: self.parts.pop(0)} if self.parts else None


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """quantize_static warns on the root logger that the graph should be pre-processed (shape inference):
    the exporter's graphs carry their shapes, so the advice is noise here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32: bytes | Path, crops: torch.Tensor, reduce_range: bool) -> bytes:
    """The INT8 graph (QDQ, per-channel weights) of an fp32 pose graph, activation ranges from ``crops``."""
    onnx = require_onnx("onnx")
    require_onnx("onnxruntime")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = onnx.load_from_string(fp32) if isinstance(fp32, bytes) else onnx.load(fp32)
    with tempfile.TemporaryDirectory(prefix="okspose-int8-") as tmp, _quiet_root_logger():
        out = Path(tmp) / "int8.onnx"
        quantize_static(model, out, _CropsReader(crops), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=float_nodes(model))
        return out.read_bytes()


def int8_key(model: nn.Module, input_size: tuple[int, int], calibration: Calibration, reduce_range: bool) -> str:
    """The cache key of ``model``'s INT8 graph: its weights, the calibration crops and the quantizer."""
    variant = (f"int8|{calibration.describe()}|reduce_range={reduce_range}|"
               f"onnxruntime {importlib.metadata.version('onnxruntime')}")
    return graph_key(model, input_size, variant)


def int8_graph(model: nn.Module, input_size: tuple[int, int], calibration: Calibration) -> bytes | Path:
    """``model``'s INT8 graph: from the cache, else quantized (calibrated on ``calibration``'s crops) and cached."""
    require_onnx("onnxruntime")
    reduce_range = not has_vnni()
    key = int8_key(model, input_size, calibration, reduce_range)
    hit = cached_graph(key)
    if hit is not None:
        return hit
    fp32 = fp32_graph(model, input_size, graph_key(model, input_size))
    data = quantize_int8(fp32, calibration.crops(), reduce_range)
    store_graph(key, data)
    return data
