"""BatchNorm folding for inference.

In eval mode a BatchNorm is a per-channel affine map, so when it directly follows a convolution it can
be merged into that convolution's weights and bias, saving a full pass over the activations. In
:mod:`okspose.models.hourglass` every such conv->BN pair is a :class:`ConvBnAct` (the stem conv, the
first two convs of each residual, the 1x1 projection in each stack head), so folding is a loop over
those modules. The pre-activation BN at the start of each residual is left in place: it follows a sum
(block input), not a conv, and the ReLU after it blocks folding it forward into the next conv.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from okspose.models.hourglass import ConvBnAct

# What a ConvBnAct's BN may be: BatchNorm2d, or SyncBatchNorm where training converted it (train.sync_bn), which
# is no BatchNorm2d subclass but the same affine map in eval mode
FOLDABLE = (nn.BatchNorm2d, nn.SyncBatchNorm)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every :class:`ConvBnAct`'s BN folded into its conv.

    The input model is not modified. The copy is for inference only: it must stay in eval mode (the
    folded convs bake in the running statistics, and training it would not update them). Pass the plain
    module, not a DDP or ``torch.compile`` wrapper; compile the folded copy afterwards if wanted.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, ConvBnAct) and isinstance(module.bn, FOLDABLE):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    return fused
