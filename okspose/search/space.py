"""The search space: which layer may come next in a partial block, and uniformly random blocks.

The controller's actions are exactly :func:`next_layers`, so every block it proposes passes
:func:`okspose.models.blockqnn.parse_code`. add and concat list their predecessors in ascending order
(both are symmetric up to a channel permutation), so one network has one code.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np

from okspose.models.blockqnn import KERNELS, MAX_WIDTH, Layer, format_code, validate_layers

UNARY_TYPES = tuple((op, k) for op, ks in KERNELS.items() for k in ks) + (("identity", 0),)


def next_layers(layers: list[Layer], max_layers: int, max_width: int = MAX_WIDTH) -> tuple[Layer, ...]:
    """Every layer that may follow ``layers`` (terminal first, once there is a layer; only terminal at
    ``max_layers``)."""
    return _next_layers(tuple(layers), max_layers, max_width)


@lru_cache(maxsize=65536)  # Q-learning asks again for the same prefixes at every replay
def _next_layers(layers: tuple[Layer, ...], max_layers: int, max_width: int) -> tuple[Layer, ...]:
    index = len(layers) + 1
    terminal = [Layer(index, "terminal")] if layers else []
    if index > max_layers:
        return terminal
    widths = validate_layers(layers) if layers else [1]
    unary = [Layer(index, op, k, p) for op, k in UNARY_TYPES for p in range(index)]
    pairs = [
        Layer(index, op, 0, a, b)
        for a, b in combinations(range(index), 2)
        for op in ("add", "concat")
        if (widths[a] == widths[b] if op == "add" else widths[a] + widths[b] <= max_width)
    ]
    return tuple(terminal + unary + pairs)


def random_code(rng: np.random.Generator, max_layers: int, max_width: int = MAX_WIDTH) -> str:
    """A block drawn by choosing each next layer uniformly among :func:`next_layers` (epsilon = 1)."""
    layers: list[Layer] = []
    while True:
        choices = next_layers(layers, max_layers, max_width)
        layer = choices[int(rng.integers(len(choices)))]
        if layer.op == "terminal":
            return format_code(layers)
        layers.append(layer)
