"""The network a config describes, and that network with a checkpoint's weights."""

from __future__ import annotations

from torch import nn

from okspose.checkpoints import Checkpoint, load_weights
from okspose.config import Config, build_schema
from okspose.errors import ConfigError
from okspose.models.backbone import FEATURE_STRIDE, BackbonePoseNet, backbone_spec, deconv_layers, load_pretrained
from okspose.models.blockqnn import blockqnn_pose_net
from okspose.models.hourglass import StackedHourglass


def build_model(cfg: Config, pretrained: bool = False) -> nn.Module:
    """``cfg``'s network. ``pretrained``: start a backbone network from ``model.pretrained`` (training's
    start; a checkpoint or ``train.init_weights`` brings its own weights, and needs no ImageNet file)."""
    m = cfg.model
    joints = build_schema(cfg).num_joints
    if m.name == "backbone":
        net = BackbonePoseNet(m.backbone, joints, model_geometry(cfg)[0], m.num_features)
        if pretrained and m.pretrained:
            load_pretrained(net, m.pretrained)
        return net
    if m.name == "blockqnn":
        return blockqnn_pose_net(m.block_code, m.num_stacks, m.num_features, joints, m.depth, m.modules_per_position)
    return StackedHourglass(m.num_stacks, m.num_features, joints, m.depth, m.modules_per_position)


def model_geometry(cfg: Config) -> tuple[int, int]:
    """(output stride, the number the input's sides must be multiples of) of ``cfg``'s network: the
    hourglass halves its input ``depth`` times below the stem's stride; a backbone network's stride is the
    config's input size over its heatmap size (its deconvolutions follow), on a backbone of stride 32."""
    m = cfg.model
    if m.name == "backbone":
        backbone_spec(m.backbone)
        (w, _), (hw, _) = cfg.data.input_size, cfg.data.heatmap_size
        if hw < 1 or w % hw:
            raise ConfigError(f"data.input_size {w} is not a multiple of data.heatmap_size {hw} (model.name=backbone)")
        deconv_layers(w // hw)
        return w // hw, FEATURE_STRIDE
    if m.pretrained:
        raise ConfigError(f"model.pretrained={m.pretrained!r} is for model.name=backbone (the {m.name} network "
                          "starts from train.init_weights)")
    stride = StackedHourglass.stride
    return stride, stride * 2 ** m.depth


def checkpoint_model(cfg: Config, checkpoint: Checkpoint) -> nn.Module:
    """``cfg``'s network (on the CPU) with the weights of ``checkpoint`` (a training checkpoint's ``model``
    entry or a bare state dict); weights that do not fit name the first parameter (:class:`CheckpointError`).
    Whether ``cfg`` keeps the checkpoint's model and geometry settings is checked where ``cfg`` is made
    (:func:`~okspose.run_config.load_run_config`)."""
    return load_weights(build_model(cfg), checkpoint.state, checkpoint.path)
