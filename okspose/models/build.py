"""The network a config describes, and that network with a checkpoint's weights."""

from __future__ import annotations

from torch import nn

from okspose.checkpoints import Checkpoint, load_weights
from okspose.config import Config, build_schema
from okspose.models.blockqnn import blockqnn_pose_net
from okspose.models.hourglass import StackedHourglass


def build_model(cfg: Config) -> StackedHourglass:
    m = cfg.model
    if m.name == "blockqnn":
        return blockqnn_pose_net(m.block_code, m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth,
                                 m.modules_per_position)
    return StackedHourglass(m.num_stacks, m.num_features, build_schema(cfg).num_joints, m.depth,
                            m.modules_per_position)


def model_geometry(cfg: Config) -> tuple[int, int]:
    """(output stride, the number the input's sides must be multiples of) of ``cfg``'s network: the
    hourglass halves its input ``depth`` times below the stem's stride."""
    stride = StackedHourglass.stride
    return stride, stride * 2 ** cfg.model.depth


def checkpoint_model(cfg: Config, checkpoint: Checkpoint) -> nn.Module:
    """``cfg``'s network (on the CPU) with the weights of ``checkpoint`` (a training checkpoint's ``model``
    entry or a bare state dict); weights that do not fit name the first parameter (:class:`CheckpointError`).
    Whether ``cfg`` keeps the checkpoint's model and geometry settings is checked where ``cfg`` is made
    (:func:`~okspose.run_config.load_run_config`)."""
    return load_weights(build_model(cfg), checkpoint.state, checkpoint.path)
