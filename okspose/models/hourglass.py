"""Stacked Hourglass network (Newell, Yang & Deng, "Stacked Hourglass Networks for Human Pose
Estimation", ECCV 2016).

Layout follows the paper: a stride-4 stem, then ``num_stacks`` hourglasses, each followed by a small
head that predicts joint heatmaps. Every stack's heatmaps are returned so the loss can supervise them
all (intermediate supervision); the next stack sees its input plus 1x1 "remaps" of the previous
stack's features and heatmaps.

Every convolution that feeds a BatchNorm directly lives in a :class:`ConvBnAct`. The paper's
pre-activation bottleneck (BN-ReLU-conv x3) is written with the same arithmetic as
``BN-ReLU-[conv-BN-ReLU]-[conv-BN-ReLU]-conv``, so all conv->BN pairs are explicit modules and
:func:`okspose.models.fuse.fold_batchnorm` can fold them with a plain loop. Only the first BN of each
residual (it acts on the block input, which is a sum, not a conv output) cannot be folded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn


class ConvBnAct(nn.Module):
    """Conv (no bias: the BN shift makes it redundant) -> BatchNorm -> optional ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """The paper's pre-activation bottleneck: BN-ReLU-1x1 (F/2), BN-ReLU-3x3 (F/2), BN-ReLU-1x1 (F).

    The skip is the identity, or a 1x1 conv when the channel count changes.
    """

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        mid_chs = out_chs // 2
        self.norm = nn.BatchNorm2d(in_chs)  # pre-activation of the block input; not foldable
        self.act = nn.ReLU(inplace=True)
        self.reduce = ConvBnAct(in_chs, mid_chs, 1)
        self.spatial = ConvBnAct(mid_chs, mid_chs, 3)
        self.expand = nn.Conv2d(mid_chs, out_chs, 1)
        self.skip = nn.Conv2d(in_chs, out_chs, 1) if in_chs != out_chs else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        # Not in-place on x: x is also the skip input.
        y = self.act(self.norm(x))
        y = self.expand(self.spatial(self.reduce(y)))
        return y + self.skip(x)


MakeModule = Callable[[int], nn.Module]  # num_features -> a module keeping [B, F, H, W] shapes


def residual_module(num_features: int) -> nn.Module:
    return Residual(num_features, num_features)


def module_chain(make: MakeModule, num_features: int, count: int) -> nn.Module:
    """``count`` modules in a row at one position; a single one stays bare, so the state-dict keys of
    one-module hourglasses (every checkpoint so far) are unchanged."""
    if count == 1:
        return make(num_features)
    return nn.Sequential(*(make(num_features) for _ in range(count)))


class Hourglass(nn.Module):
    """One hourglass level; ``depth`` levels nest recursively down to 1/2**depth resolution.

    out = upper(x) + upsample(after(inner(lower(maxpool(x))))), where ``inner`` is the next level,
    or a single position of modules at the bottom. Each position holds ``modules`` modules made by
    ``make`` (the paper's residual by default; a searched BlockQNN block in :mod:`okspose.models.blockqnn`).
    """

    def __init__(self, depth: int, num_features: int, modules: int = 1, make: MakeModule = residual_module):
        super().__init__()
        self.upper = module_chain(make, num_features, modules)
        self.pool = nn.MaxPool2d(2, 2)
        self.lower = module_chain(make, num_features, modules)
        self.inner: nn.Module = (
            Hourglass(depth - 1, num_features, modules, make) if depth > 1
            else module_chain(make, num_features, modules)
        )
        self.after = module_chain(make, num_features, modules)

    def forward(self, x: Tensor) -> Tensor:
        up = self.upper(x)
        low = self.after(self.inner(self.lower(self.pool(x))))
        # Upsampling to up's exact size (nearest) equals a 2x upsample when the size is divisible by
        # 2**depth and still lines up when it is not (max-pool floors odd sizes).
        return up + F.interpolate(low, size=up.shape[-2:], mode="nearest")


class StackHead(nn.Module):
    """Per-stack output: residual(s) (or ``make``'s modules), 1x1 conv-BN-ReLU, then a 1x1 conv to one
    heatmap per joint."""

    def __init__(self, num_features: int, num_joints: int, modules: int = 1, make: MakeModule = residual_module):
        super().__init__()
        self.residual = module_chain(make, num_features, modules)
        self.proj = ConvBnAct(num_features, num_features, 1)
        self.heatmaps = nn.Conv2d(num_features, num_joints, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.proj(self.residual(x))
        return features, self.heatmaps(features)


class Remap(nn.Module):
    """Maps a stack's features and heatmaps back to feature space to add to the next stack's input."""

    def __init__(self, num_features: int, num_joints: int):
        super().__init__()
        self.features = nn.Conv2d(num_features, num_features, 1)
        self.heatmaps = nn.Conv2d(num_joints, num_features, 1)

    def forward(self, x: Tensor, features: Tensor, heatmaps: Tensor) -> Tensor:
        return x + self.features(features) + self.heatmaps(heatmaps)


class StackedHourglass(nn.Module):
    """Stacked Hourglass v1. ``forward`` returns one ``[B, num_joints, H/4, W/4]`` heatmap tensor per
    stack; the last one is the prediction, the others exist for intermediate supervision.

    The last stack has no remap, so every parameter takes part in the loss (DDP needs no
    ``find_unused_parameters``). ``modules_per_position`` > 1 repeats the module at every hourglass
    position and head (3 gives the 18.6 M-parameter HG-2 baseline of BlockQNN's comparison); ``make`` swaps the
    residual inside the hourglasses and heads for another module (the stem keeps its residuals, which
    change the channel count).
    """

    stride = 4  # input pixels per heatmap pixel (the stem's stride-2 conv and max-pool)

    def __init__(self, num_stacks: int = 8, num_features: int = 256, num_joints: int = 17, depth: int = 4,
                 modules_per_position: int = 1, make: MakeModule = residual_module):
        super().__init__()
        if num_stacks < 1 or depth < 1 or modules_per_position < 1:
            raise ValueError(f"need num_stacks, depth and modules_per_position >= 1, got {num_stacks=} {depth=} "
                             f"{modules_per_position=}")
        if num_features % 2:
            raise ValueError(f"num_features must be even (bottleneck uses F/2), got {num_features}")
        self.num_stacks = num_stacks
        self.num_features = num_features
        self.num_joints = num_joints
        self.depth = depth

        self.stem = nn.Sequential(
            ConvBnAct(3, 64, 7, stride=2),
            Residual(64, 128),
            nn.MaxPool2d(2, 2),
            Residual(128, 128),
            Residual(128, num_features),
        )
        self.hourglasses = nn.ModuleList(
            Hourglass(depth, num_features, modules_per_position, make) for _ in range(num_stacks)
        )
        self.heads = nn.ModuleList(
            StackHead(num_features, num_joints, modules_per_position, make) for _ in range(num_stacks)
        )
        self.remaps = nn.ModuleList(Remap(num_features, num_joints) for _ in range(num_stacks - 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Start heatmaps near zero: the targets are mostly zero, and large random heatmaps fed through
        # the remaps would only perturb the next stack's input.
        for head in self.heads:
            nn.init.normal_(head.heatmaps.weight, std=0.001)

    def float32_layers(self) -> list[str]:
        """The layers that reduced-precision inference keeps in float32: the last heatmap conv, whose
        outputs sub-pixel decoding takes logs of (in bf16 its rounding alone moves decoded joints about as
        far as all other layers together; < 0.3% of the FLOPs), and the first 7x7 conv, which would otherwise
        see the normalised pixels rounded to bf16's 8-bit mantissa (0.4% of HG-8's FLOPs). What each moved
        on trained networks is in docs/benchmarks.md."""
        return ["stem.0", f"heads.{self.num_stacks - 1}.heatmaps"]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outputs: list[Tensor] = []
        for i, (hourglass, head) in enumerate(zip(self.hourglasses, self.heads, strict=True)):
            features, heatmaps = head(hourglass(x))
            outputs.append(heatmaps)
            if i < len(self.remaps):
                x = self.remaps[i](x, features, heatmaps)
        return outputs


def final_heatmaps(out: Tensor | list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """The prediction in a network's output: the last stack's heatmaps of a :class:`StackedHourglass`
    (one tensor per stack), or the output itself for a network that returns one tensor."""
    return out[-1] if isinstance(out, list | tuple) else out
