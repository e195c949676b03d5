"""BatchNorm folding for inference.

In eval mode a BatchNorm is a per-channel affine map, so when it directly follows a convolution (or a
transposed one) it can be merged into that convolution's weights and bias, saving a full pass over the
activations. The pairs are found in the network's traced graph (``torch.fx``): a BatchNorm whose input is the
output of a convolution used nowhere else, each module called once. That covers every network here alike: the
hourglass's :class:`~okspose.models.hourglass.ConvBnAct` modules, torchvision's ResNets and MobileNetV3,
EfficientNet-Lite and the deconvolution head of :mod:`okspose.models.backbone`. The hourglass's pre-activation BN
at the start of each residual stays: it follows a sum, not a conv, and the ReLU after it blocks folding it
forward into the next conv.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# What a folded BN may be: BatchNorm2d, or SyncBatchNorm where training converted it (train.sync_bn), which
# is no BatchNorm2d subclass but the same affine map in eval mode
FOLDABLE = (nn.BatchNorm2d, nn.SyncBatchNorm)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(convolution, BatchNorm) module names where the BatchNorm's only input is the convolution's output,
    that output feeds nothing else, and neither module is called twice."""
    modules = dict(model.named_modules())
    graph = torch.fx.symbolic_trace(model).graph
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], FOLDABLE) or len(node.args) != 1:
            continue
        source = node.args[0]
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(modules[source.target], nn.Conv2d | nn.ConvTranspose2d)
                and calls[source.target] == calls[node.target] == 1):
            pairs.append((source.target, node.target))
    return pairs



def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every BatchNorm that follows a convolution folded into it
    (:func:`conv_bn_pairs`; the BatchNorm becomes an identity, so module names stay).

    The input model is not modified. The copy is for inference only: it must stay in eval mode (the
    folded convs bake in the running statistics, and training it would not update them). Pass the plain
    module, not a DDP or ``torch.compile`` wrapper; compile the folded copy afterwards if wanted.
    """
    fused = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(fused):
        conv = fused.get_submodule(conv_name)
        fused.set_submodule(conv_name, fuse_conv_bn_eval(conv, fused.get_submodule(bn_name),
                                                         transpose=isinstance(conv, nn.ConvTranspose2d)))
        fused.set_submodule(bn_name, nn.Identity())
    return fused
