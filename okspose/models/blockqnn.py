"""BlockQNN blocks (Zhong et al., "Practical Block-wise Neural Network Architecture Generation", CVPR 2018):
the Network Structure Code, its validator, its compiler to an ``nn.Module``, and the pose network that puts
the block inside the hourglass's multi-scale structure.

A code is a list of layers ``(index, type, kernel, pred1, pred2)``. As a string, one layer per ``;``:
``INDEX TYPE [PRED1 [PRED2]]`` with TYPE one of conv1 conv3 conv5 (ReLU-Conv-BN), max1 max3, avg1 avg3
(pooling, stride 1), identity, add, concat, terminal. Example: ``"1 conv1 0; 2 conv3 1; 3 add 0 2"``.
Layer 0 is the block input; predecessors are earlier indices; add and concat take two distinct ones;
terminal (optional) ends the code. Outputs that no layer consumes are concatenated, then a 1x1
ReLU-Conv-BN maps them to the block's width.

Widths are tracked as multiples of the block width C: convolutions give C, pooling and identity keep
their input's width, concat sums, and add needs equal widths. Concat chains can double widths at every
layer, so a tensor may be at most ``MAX_WIDTH`` x C wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial

import torch
from torch import Tensor, nn

from okspose.errors import ConfigError
from okspose.models.hourglass import ConvBnAct, StackedHourglass

KERNELS = {"conv": (1, 3, 5), "max": (1, 3), "avg": (1, 3)}
UNARY = ("conv", "max", "avg", "identity")
BINARY = ("add", "concat")
TYPES = tuple(f"{op}{k}" for op, ks in KERNELS.items() for k in ks) + ("identity", "add", "concat", "terminal")
MAX_WIDTH = 4  # widest tensor inside a block, in multiples of the block width


class BlockCodeError(ConfigError):
    """A block code that cannot be parsed or does not describe a valid block; the message names the layer."""


@dataclass(frozen=True)
class Layer:
    """One layer tuple. ``kernel`` is 0 for types without one, ``pred2`` is 0 for one-input types."""

    index: int
    op: str  # conv, max, avg, identity, add, concat, terminal
    kernel: int = 0
    pred1: int = 0
    pred2: int = 0

    @property
    def type(self) -> str:
        return f"{self.op}{self.kernel}" if self.op in KERNELS else self.op

    @property
    def preds(self) -> tuple[int, ...]:
        if self.op == "terminal":
            return ()
        return (self.pred1, self.pred2) if self.op in BINARY else (self.pred1,)

    @cached_property
    def text(self) -> str:  # cached: the controller looks layers up by their text millions of times
        return " ".join(str(v) for v in (self.index, self.type, *self.preds))

    def __str__(self) -> str:
        return self.text


def _layer_error(code: str, where: str, why: str) -> BlockCodeError:
    return BlockCodeError(f"block code {code!r}: layer {where}: {why}")


def _parse_layer(part: str, code: str) -> Layer:
    tokens = part.split()
    if len(tokens) < 2:
        raise _layer_error(code, repr(part), "expected 'INDEX TYPE [PRED1 [PRED2]]'")
    index_text, kind, *pred_texts = tokens
    if not index_text.isdigit():
        raise _layer_error(code, repr(part), f"index {index_text!r} is not a number")
    if kind not in TYPES:
        raise _layer_error(code, repr(part), f"unknown type {kind!r}; types: {' '.join(TYPES)}")
    op = kind.rstrip("0123456789")
    kernel = int(kind[len(op):]) if op in KERNELS else 0
    arity = 0 if op == "terminal" else 2 if op in BINARY else 1
    if len(pred_texts) != arity or not all(t.isdigit() for t in pred_texts):
        raise _layer_error(code, repr(part), f"{kind} takes {arity} predecessor index(es), got {pred_texts}")
    preds = [int(t) for t in pred_texts] + [0, 0]
    return Layer(int(index_text), op, kernel, preds[0], preds[1])


def parse_code(code: str, max_width: int = MAX_WIDTH) -> tuple[Layer, ...]:
    """The validated layers of a code string (a trailing terminal is dropped); :class:`BlockCodeError`
    names the first offending layer."""
    parts = [p.strip() for p in code.split(";") if p.strip()]
    layers = [_parse_layer(p, code) for p in parts]
    if layers and layers[-1].op == "terminal":
        layers = layers[:-1]
    validate_layers(layers, code, max_width)
    return tuple(layers)


def validate_layers(layers: list[Layer] | tuple[Layer, ...], code: str = "", max_width: int = MAX_WIDTH) -> list[int]:
    """Check a layer list; returns every node's width (node 0 = the input) in multiples of the block width."""
    code = code or format_code(layers)
    if not layers:
        raise BlockCodeError(f"block code {code!r}: no layers (a block needs at least one)")
    widths = [1]
    for position, layer in enumerate(layers, start=1):
        where = f"{position} ({layer})"
        if layer.index != position:
            raise _layer_error(code, where, f"index should be {position} (layers are numbered 1, 2, ...)")
        if layer.op == "terminal":
            raise _layer_error(code, where, "terminal must be the last layer")
        if layer.op in KERNELS and layer.kernel not in KERNELS[layer.op]:
            raise _layer_error(code, where, f"{layer.op} kernel must be one of {KERNELS[layer.op]}")
        bad = [p for p in layer.preds if not 0 <= p < position]
        if bad:
            raise _layer_error(code, where, f"predecessor {bad[0]} is not an earlier layer (0..{position - 1})")
        if layer.op in BINARY and layer.pred1 == layer.pred2:
            raise _layer_error(code, where, f"{layer.op} needs two distinct predecessors")
        w_in = [widths[p] for p in layer.preds]
        if layer.op == "add" and w_in[0] != w_in[1]:
            raise _layer_error(code, where, f"add of tensors {w_in[0]}x and {w_in[1]}x the block width")
        width = 1 if layer.op == "conv" else sum(w_in) if layer.op == "concat" else w_in[0]
        if width > max_width:
            raise _layer_error(code, where, f"output would be {width}x the block width (at most {max_width}x)")
        widths.append(width)
    return widths


def format_code(layers: list[Layer] | tuple[Layer, ...]) -> str:
    """The canonical string of a layer list (no terminal): the key under which a search stores a block."""
    return "; ".join(str(layer) for layer in layers)


def output_nodes(layers: tuple[Layer, ...] | list[Layer]) -> list[int]:
    """Layers whose output no other layer consumes: they are concatenated into the block output."""
    used = {p for layer in layers for p in layer.preds}
    return [layer.index for layer in layers if layer.index not in used]


def graph_density(layers: tuple[Layer, ...] | list[Layer]) -> float:
    """Edges / nodes of the block's graph; nodes are the input, the layers and the output concat, edges the
    predecessor links plus one link from each unconsumed layer to the output (BlockQNN's density)."""
    edges = sum(len(layer.preds) for layer in layers) + len(output_nodes(layers))
    return edges / (len(layers) + 2)


class Block(nn.Module):
    """A compiled block: ``[B, C, H, W] -> [B, C, H, W]`` for any code."""

    def __init__(self, code: str | tuple[Layer, ...], channels: int):
        super().__init__()
        self.layers = parse_code(code) if isinstance(code, str) else code
        widths = validate_layers(self.layers)
        self.outputs = output_nodes(self.layers)
        self.ops = nn.ModuleList(self._op(layer, widths, channels) for layer in self.layers)
        self.project = self._conv(sum(widths[i] for i in self.outputs) * channels, channels, 1)

    @staticmethod
    def _conv(in_chs: int, out_chs: int, kernel: int) -> nn.Module:
        # ReLU is not in-place: a node's tensor may feed several layers.
        return nn.Sequential(nn.ReLU(), ConvBnAct(in_chs, out_chs, kernel, act=False))

    def _op(self, layer: Layer, widths: list[int], channels: int) -> nn.Module:
        if layer.op == "conv":
            return self._conv(widths[layer.pred1] * channels, channels, layer.kernel)
        if layer.op == "max":
            return nn.MaxPool2d(layer.kernel, 1, layer.kernel // 2)
        if layer.op == "avg":
            return nn.AvgPool2d(layer.kernel, 1, layer.kernel // 2, count_include_pad=False)
        return nn.Identity()  # identity; add and concat have no parameters

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for layer, op in zip(self.layers, self.ops):
            if layer.op == "add":
                nodes.append(nodes[layer.pred1] + nodes[layer.pred2])
            elif layer.op == "concat":
                nodes.append(torch.cat([nodes[layer.pred1], nodes[layer.pred2]], dim=1))
            else:
                nodes.append(op(nodes[layer.pred1]))
        return self.project(torch.cat([nodes[i] for i in self.outputs], dim=1))


def blockqnn_pose_net(
    code: str, num_stacks: int, num_features: int, num_joints: int, depth: int = 4, modules_per_position: int = 1
) -> StackedHourglass:
    """The hourglass's multi-scale structure (stem, stacks, heads, intermediate supervision) with the block
    in place of every residual inside the hourglasses and heads."""
    layers = parse_code(code)
    return StackedHourglass(num_stacks, num_features, num_joints, depth, modules_per_position,
                            make=partial(Block, layers))

