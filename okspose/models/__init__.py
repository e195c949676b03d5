"""Pose networks and tools to measure and fold them."""

from okspose.models.complexity import Complexity, count_flops, count_parameters, measure_complexity
from okspose.models.fuse import fold_batchnorm
from okspose.models.hourglass import ConvBnAct, Hourglass, Remap, Residual, StackedHourglass, StackHead

__all__ = [
    "Complexity",
    "ConvBnAct",
    "Hourglass",
    "Remap",
    "Residual",
    "StackHead",
    "StackedHourglass",
    "count_flops",
    "count_parameters",
    "fold_batchnorm",
    "measure_complexity",
]
